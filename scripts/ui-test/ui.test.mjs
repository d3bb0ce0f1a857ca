// Real-browser test of the gateway's web UI: Debian's chromium driven by
// playwright-core against a running all-in-one (STAGING_UI_URL). The Go test
// cmd/stagingd TestUIInBrowser starts the system and runs this script.
//
//   STAGING_UI_URL=http://127.0.0.1:8080 node scripts/ui-test/ui.test.mjs
//
// Exits non-zero, saying why, when the UI does not behave.
import { chromium } from "playwright-core";

const base = process.env.STAGING_UI_URL;
const screenshot = process.env.STAGING_UI_SCREENSHOT || "/tmp/ui.png";
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!base) {
  console.error("STAGING_UI_URL is not set");
  process.exit(2);
}

const step = (what) => console.log("ui-test: " + what);
const suffix = Math.random().toString(36).slice(2, 8);
const target = `ui-${suffix}/hello.txt`;

const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(20000);
  const problems = [];
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") problems.push("console error: " + m.text()); });

  step("open " + base);
  await page.goto(base + "/");
  await page.getByRole("heading", { name: "SKAO data staging" }).waitFor();

  step("every form control has an accessible label");
  const unlabelled = await page.$$eval("input, select, textarea", (els) =>
    els.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")).map((e) => e.id || e.name));
  if (unlabelled.length) throw new Error("controls without a label: " + unlabelled.join(", "));

  step("methods come from /api/v1/methods");
  const method = page.getByLabel("Method");
  await page.locator("#method option[value=local_copy]").waitFor({ state: "attached" });
  await method.selectOption("local_copy");

  step("submit local_copy of sample/hello.txt to " + target);
  await page.getByLabel("Username", { exact: true }).first().fill("alice");
  await page.getByLabel("Source path on storage").fill("sample/hello.txt");
  await page.getByLabel("Relative path in your area").fill(target);
  await page.getByRole("button", { name: "Stage" }).click();

  step("live status reaches succeeded (SSE)");
  await page.locator("#stage-status[data-status=succeeded]").waitFor();
  const events = await page.locator("#stage-events li").allTextContents();
  if (!events.some((e) => e.includes("succeeded"))) throw new Error("no succeeded event listed: " + events.join(" | "));

  step("the request is in the history");
  await page.locator("#history tbody tr", { hasText: target }).filter({ hasText: "succeeded" }).waitFor();

  step("log lines are shown");
  await page.locator("#logs li").first().waitFor();
  await page.locator("#logs li", { hasText: "http_request" }).first().waitFor();

  step("demo file creation (demo mode is on)");
  await page.locator("#demo").waitFor({ state: "visible" });
  await page.getByLabel("Path under the storage root").fill(`demo/ui-${suffix}.txt`);
  await page.getByRole("button", { name: "Create file" }).click();
  await page.locator("#demo-message", { hasText: "Created" }).waitFor();

  // The browser reports the refused request below as a console error.
  if (problems.length) throw new Error(problems.join("\n"));

  step("a bad request shows its error code");
  await page.getByLabel("Source path on storage").fill("../etc/passwd");
  await page.getByRole("button", { name: "Stage" }).click();
  await page.locator("#stage-status[data-status=error]").waitFor();
  const refused = await page.locator("#stage-status").textContent();
  if (!/invalid_path|outside_storage/.test(refused)) throw new Error("refusal shown as: " + refused);
  step("refusal shown: " + refused.trim());
  // Back to the successful state for the picture.
  await page.getByLabel("Source path on storage").fill("sample/hello.txt");
  await page.getByLabel("Relative path in your area").fill(`ui-${suffix}/again.txt`);
  await page.getByRole("button", { name: "Stage" }).click();
  await page.locator("#stage-status[data-status=succeeded]").waitFor();
  await page.screenshot({ path: screenshot, fullPage: true });
  step("screenshot " + screenshot);
  step("PASS");
} catch (err) {
  failed = true;
  console.error("ui-test: FAIL: " + (err && err.stack ? err.stack : err));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
