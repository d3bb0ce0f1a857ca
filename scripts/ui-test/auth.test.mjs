// Real-browser test of the web UI with authentication on: the all-in-one
// runs with STAGING_AUTH_MODE=tokens and the tokens alice-ui-token (alice)
// and ops-ui-token (ops, admin). The Go test cmd/stagingd
// TestUIInBrowserWithAuth starts it and runs this script.
import { base, check, run, step } from "./lib.mjs";

const suffix = Math.random().toString(36).slice(2, 8);

await run(async (context) => {
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const problems = [];
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  const signIn = async (token) => {
    await page.getByLabel("Access token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("#signin-message", { hasText: "Signed in" }).waitFor();
  };
  const showHistory = async (user) => {
    await page.getByLabel("Username", { exact: true }).nth(1).fill(user);
    await page.getByRole("button", { name: "Show history" }).click();
  };

  step("without a token the page asks for one");
  await page.goto(base + "/");
  await page.getByLabel("Access token").waitFor();
  await page.locator("#history-message", { hasText: "unauthorized" }).waitFor();

  step("alice signs in, stages, and follows her request live with her token");
  await signIn("alice-ui-token");
  await page.locator("#history-message", { hasText: "of alice" }).waitFor();
  await page.getByLabel("Method", { exact: true }).first().selectOption("local_copy");
  await page.getByLabel("Source path on storage").fill("sample/hello.txt");
  await page.getByLabel("Relative path in your area").fill(`auth-${suffix}/hello.txt`);
  await page.getByRole("button", { name: "Stage" }).click();
  await page.locator(".card[data-status=succeeded]", { hasText: `auth-${suffix}/hello.txt` }).waitFor();
  await page.locator("#history tbody tr", { hasText: `auth-${suffix}/hello.txt` }).waitFor();

  step("alice sees only her own history and not the system's logs");
  await showHistory("ops");
  await page.locator("#history-message", { hasText: "forbidden" }).waitFor();
  check(await page.locator("#history tbody tr").count() === 0, "rows stay shown under the refusal");
  await page.locator("#logs-message", { hasText: "forbidden" }).waitFor();

  step("signing out forgets the token");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#history-message", { hasText: "unauthorized" }).waitFor();
  check(await page.evaluate(() => sessionStorage.length) === 0, "the token is still stored");

  step("an admin chooses the user: alice's history, and the logs");
  await signIn("ops-ui-token");
  await showHistory("alice");
  await page.locator("#history tbody tr", { hasText: `auth-${suffix}/hello.txt` }).waitFor();
  await page.locator("#logs li").first().waitFor();

  check(!problems.length, problems.join("\n"));
});
