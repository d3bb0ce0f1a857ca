// Real-browser test of the gateway's web UI: Debian's chromium driven by
// playwright-core against a running all-in-one in demo mode
// (STAGING_UI_URL). The Go test cmd/stagingd TestUIInBrowser starts the
// system, puts a symbolic link out of the storage at outside-link, and runs
// this script.
//
//   STAGING_UI_URL=http://127.0.0.1:8080 STAGING_UI_SCREENSHOTS=/tmp/shots node scripts/ui-test/ui.test.mjs
//
// Screenshots go to STAGING_UI_SCREENSHOTS: ui-main.png (the main view, the
// README's picture), ui-wide.png and ui-narrow.png (whole pages at 1400
// and 400 pixels). Exits non-zero, saying why, when the UI does not behave.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { base, check, run, step } from "./lib.mjs";

const shots = process.env.STAGING_UI_SCREENSHOTS || "/tmp/ui-screenshots";
mkdirSync(shots, { recursive: true });
const suffix = Math.random().toString(36).slice(2, 8);

await run(async (context) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  const problems = [];
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  // Refused requests (the bad path, the 405 of a cancel) are console
  // errors by design; anything else is a fault of the page.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of (400|405|422)/.test(m.text())) problems.push("console error: " + m.text());
  });
  const stage = async (method, source, target) => {
    await page.getByLabel("Method", { exact: true }).first().selectOption(method);
    await page.getByLabel("Username", { exact: true }).first().fill("alice");
    await page.getByLabel("Source path on storage").fill(source);
    await page.getByLabel("Relative path in your area").fill(target);
    await page.getByRole("button", { name: "Stage" }).click();
  };

  step("open " + base + "; every control is labelled; the docs link is /docs");
  const openapiRead = page.waitForResponse((r) => r.url().endsWith("/openapi.json"));
  await page.goto(base + "/");
  await page.getByRole("heading", { name: "SKAO data staging" }).waitFor();
  const unlabelled = await page.$$eval("input, select, textarea", (els) =>
    els.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")).map((e) => e.id || e.name));
  check(!unlabelled.length, "controls without a label: " + unlabelled.join(", "));
  check(await page.getByRole("link", { name: "API documentation" }).getAttribute("href") === "/docs", "the header does not link /docs");
  await page.locator("#method option[value=local_copy]").waitFor({ state: "attached" });
  check(await page.getByLabel("Access token").isHidden(), "the sign-in form shows though this server needs no token");

  step("storage browser (keyboard): walk into sample/, pick hello.txt; a link out of the storage is shown, not followed");
  await page.getByRole("button", { name: "Browse the storage" }).focus();
  await page.keyboard.press("Enter");
  const outside = page.locator("#browser-table tr", { hasText: "outside-link" });
  await outside.waitFor();
  check((await outside.textContent()).includes("link leaving the storage (not followed)"), "the outside link is not marked: " + await outside.textContent());
  check(await outside.getByRole("button").count() === 0, "a link out of the storage can be used or entered");
  await page.getByRole("button", { name: "sample/", exact: true }).click();
  await page.locator("#browser-crumbs", { hasText: "sample" }).waitFor();
  const hello = page.locator("#browser-table tr", { hasText: "hello.txt" });
  await hello.waitFor();
  check(/\d+ B/.test(await hello.textContent()), "no size for hello.txt: " + await hello.textContent());
  await page.getByRole("button", { name: "Use sample/hello.txt as the source" }).click();
  check(await page.getByLabel("Source path on storage").inputValue() === "sample/hello.txt", "Use did not fill the source");

  step("local_copy followed live: a finished bar with sizes; the URL names the request");
  await stage("local_copy", "sample/hello.txt", `ui-${suffix}/hello.txt`);
  const copyCard = page.locator(".card", { hasText: `ui-${suffix}/hello.txt` });
  await copyCard.and(page.locator("[data-status=succeeded]")).waitFor();
  check(await copyCard.locator("progress").evaluate((b) => b.value) === 100, "the bar is not full");
  check(/100% · \d+ B of \d+ B/.test(await copyCard.locator(".progress-text").textContent()), "progress text: " + await copyCard.locator(".progress-text").textContent());
  const copyID = await copyCard.getAttribute("data-id");
  check(new URL(page.url()).searchParams.get("id") === copyID, "the URL does not name the request: " + page.url());
  await page.locator("#history tbody tr", { hasText: `ui-${suffix}/hello.txt` }).filter({ hasText: "succeeded" }).waitFor();

  step("direct_download: a link with a copy button, in the status view and in the history");
  await stage("direct_download", "sample/hello.txt", `ui-${suffix}/dl`);
  const dlCard = page.locator(".card", { hasText: `ui-${suffix}/dl` });
  await dlCard.and(page.locator("[data-status=succeeded]")).waitFor();
  const href = await dlCard.getByRole("link", { name: "Download" }).getAttribute("href");
  check(href.startsWith(base + "/api/v1/downloads/"), "download link: " + href);
  const got = await (await page.request.get(href)).text();
  check(got.startsWith("Hello from skao-staging"), "the link serves: " + got.slice(0, 80));
  await dlCard.getByRole("button", { name: "Copy link" }).click();
  await dlCard.getByRole("button", { name: "Copied" }).waitFor();
  check(await page.evaluate(() => navigator.clipboard.readText()) === href, "the clipboard does not hold the link");
  const dlRow = page.locator("#history tbody tr", { hasText: `ui-${suffix}/dl` }).filter({ hasText: "link_issued" });
  await dlRow.getByRole("link", { name: "Download" }).waitFor();

  step("a tree: files done of total");
  await stage("local_copy", "sample/tree", `ui-${suffix}/tree`);
  const treeCard = page.locator(".card", { hasText: `ui-${suffix}/tree` });
  await treeCard.and(page.locator("[data-status=succeeded]")).waitFor();
  check(/2 of 2 files/.test(await treeCard.locator(".progress-text").textContent()), "tree progress: " + await treeCard.locator(".progress-text").textContent());
  check(await page.locator(".card").count() === 3, "the three requests are not followed side by side");

  step("lifetime: hidden while the server's OpenAPI document lacks it, then offered and sent");
  await openapiRead;
  const lifetime = page.getByLabel("Keep the staged data for");
  const listed = await (await page.request.get(base + "/openapi.json")).json();
  if (!listed.components.schemas.SubmitRequest.properties.lifetime) {
    check(await lifetime.isHidden(), "the lifetime field is shown though the server has no lifetimes");
  }
  await page.route("**/openapi.json", async (route) => {
    const doc = await (await route.fetch()).json();
    doc.components.schemas.SubmitRequest.properties.lifetime = { type: "integer", minimum: 1 };
    await route.fulfill({ json: doc });
  });
  await page.goto(base + "/");
  await lifetime.waitFor();
  await lifetime.selectOption({ label: "1 day" });
  const [sent] = await Promise.all([
    page.waitForRequest((r) => r.method() === "POST" && r.url().endsWith("/api/v1/stagings")),
    stage("local_copy", "sample/hello.txt", `ui-${suffix}/kept.txt`),
  ]);
  check(sent.postDataJSON().lifetime === 86400, "lifetime sent: " + sent.postData());
  await page.unroute("**/openapi.json");

  step("errors where they happen: the username rule; a refused path clears nothing of other requests into it");
  await page.getByLabel("Username", { exact: true }).first().fill("Alice!");
  await page.getByRole("button", { name: "Stage" }).click();
  await page.locator("#stage-status[data-status=error]").waitFor();
  check((await page.locator("#stage-status").textContent()).includes("lower-case letters"), "the username rule is not explained: " + await page.locator("#stage-status").textContent());
  await stage("local_copy", "../etc/passwd", `ui-${suffix}/bad`);
  await page.locator("#stage-status[data-status=error]", { hasText: /invalid_path|outside_storage/ }).waitFor();
  check(await page.locator("#stage-status li, #stage-status p").count() === 1, "the status shows more than the refusal");
  step("refusal shown: " + (await page.locator("#stage-status").textContent()).trim());

  step("source by Rucio DID (keyboard): only the did is sent; this site has no Rucio, so the request fails and says so");
  const didChoice = page.getByRole("radio", { name: "Rucio DID" });
  await page.getByRole("radio", { name: "Path on the storage" }).focus();
  await page.keyboard.press("ArrowDown");
  check(await didChoice.isChecked(), "the arrow key does not choose Rucio DID");
  check(await page.getByLabel("Source path on storage").isHidden() && await page.getByRole("button", { name: "Browse the storage" }).isHidden(), "the path field stays with Rucio DID chosen");
  const didField = page.getByLabel("Data identifier (scope:name)");
  check((await page.locator("#did-help").textContent()).includes("dataset"), "no hint under the DID field");
  await didField.fill(`testsrc:ui-${suffix}`);
  await page.getByLabel("Relative path in your area").fill(`ui-${suffix}/by-did`);
  const [byDID] = await Promise.all([
    page.waitForRequest((r) => r.method() === "POST" && r.url().endsWith("/api/v1/stagings")),
    page.getByRole("button", { name: "Stage" }).click(),
  ]);
  const didBody = byDID.postDataJSON();
  check(didBody.did === `testsrc:ui-${suffix}` && !("local_path_on_storage" in didBody), "sent for a DID: " + byDID.postData());
  const didCard = page.locator(".card", { hasText: `ui-${suffix}/by-did` });
  await didCard.and(page.locator("[data-status=failed]")).waitFor();
  check((await didCard.locator("h3").textContent()).includes(`testsrc:ui-${suffix} → ui-${suffix}/by-did`), "the card does not name the DID: " + await didCard.locator("h3").textContent());
  check(/method_not_allowed: staging by DID is not set up/.test(await didCard.locator(".card-status").textContent()), "the failure is not shown: " + await didCard.locator(".card-status").textContent());
  await page.locator("#history tbody tr", { hasText: `testsrc:ui-${suffix}` }).filter({ hasText: "failed" }).waitFor();

  step("a DID without ':' is refused in the page; one the server refuses shows its invalid_did");
  await didField.fill(`ui-${suffix}`);
  await page.getByRole("button", { name: "Stage" }).click();
  await page.locator("#stage-status[data-status=error]", { hasText: "is not scope:name" }).waitFor();
  check(await didField.evaluate((e) => e === document.activeElement), "the DID field is not focused after its refusal");
  await didField.fill(`bad scope:ui-${suffix}`);
  await page.getByRole("button", { name: "Stage" }).click();
  await page.locator("#stage-status[data-status=error]", { hasText: "invalid_did" }).waitFor();
  step("refusal shown: " + (await page.locator("#stage-status").textContent()).trim());
  await page.getByRole("radio", { name: "Path on the storage" }).check();
  check(await page.getByLabel("Source path on storage").isVisible() && await didField.isHidden(), "choosing the path again does not bring its field back");

  step("progress of a long copy: percentage, files, rate and time left (a recorded stream)");
  const t0 = Date.parse("2026-01-02T10:00:00Z");
  const sse = (type, at, fields) => `id: ${at}\nevent: ${type}\ndata: ${JSON.stringify(Object.assign({ type, request_id: "fake-running", time: new Date(t0 + at * 1000).toISOString(), method: "local_copy", username: "alice", local_path_on_storage: "obs/big", relative_path: "big" }, fields))}\n\n`;
  await page.route("**/api/v1/stagings/fake-running/events", (route) => route.fulfill({
    status: 200, contentType: "text/event-stream",
    body: "retry: 600000\n\n" + sse("queued", 0, {}) + sse("started", 1, {}) +
      sse("progress", 3, { progress: { bytes_done: 512 << 20, bytes_total: 1024 << 20, files_done: 3, files_total: 10 } }),
  }));
  await page.goto(base + "/?id=fake-running");
  const run = page.locator(".card[data-id=fake-running]");
  await run.and(page.locator("[data-status=running]")).waitFor();
  const text = await run.locator(".progress-text").textContent();
  check(/^50% · 512 MiB of 1\.0 GiB · 3 of 10 files · 256 MiB\/s · about 2\.0 s left$/.test(text), "progress text: " + text);

  step("cancel: the button calls DELETE and says so; a server without cancel (405) hides it");
  // The request is a recorded one, so the server's answers are recorded too:
  // 202 (cancel under way), then a server that cannot cancel.
  const cancel = run.getByRole("button", { name: "Cancel" });
  const answer = (status, body) => page.route("**/api/v1/stagings/fake-running", (route) =>
    route.request().method() === "DELETE" ? route.fulfill({ status, contentType: "application/json", body: JSON.stringify(body) }) : route.fallback());
  await answer(202, { id: "fake-running", status: "running" });
  const [accepted] = await Promise.all([page.waitForRequest((r) => r.method() === "DELETE" && r.url().endsWith("/api/v1/stagings/fake-running")), cancel.click()]);
  check(accepted.method() === "DELETE", "cancel sent as " + accepted.method());
  await run.locator(".note", { hasText: "Cancel requested." }).waitFor();
  await page.unroute("**/api/v1/stagings/fake-running");
  await answer(405, { code: "method_not_allowed", detail: "DELETE is not allowed" });
  await page.goto(base + "/?id=fake-running");
  await run.and(page.locator("[data-status=running]")).waitFor();
  await run.getByRole("button", { name: "Cancel" }).click();
  await run.locator(".note", { hasText: "cannot cancel" }).waitFor();
  check(await run.getByRole("button", { name: "Cancel" }).isHidden(), "the cancel button stays after a 405");
  await page.unroute("**/api/v1/stagings/fake-running");

  step("new statuses are shown: cancelled and expired end the card");
  // The expired one is a download link whose expiry has passed: no link.
  for (const status of ["cancelled", "expired"]) {
    const id = "fake-" + status;
    const end = { request_id: id, message: "stopped", download_url: "/api/v1/downloads/gone", expires_at: "2026-01-02T11:00:00Z" };
    await page.route(`**/api/v1/stagings/${id}/events`, (route) => route.fulfill({
      status: 200, contentType: "text/event-stream",
      body: "retry: 600000\n\n" + sse("queued", 0, { request_id: id }) + sse(status, 2, end),
    }));
    await page.goto(base + "/?id=" + id);
    const card = page.locator(`.card[data-id=${id}]`);
    await card.and(page.locator(`[data-status=${status}]`)).waitFor();
    check(await card.locator(".status-" + status).count() === 1, status + " has no badge");
    check(await card.getByRole("button", { name: "Cancel" }).count() === 0, "a " + status + " request can still be cancelled");
    check(await card.getByRole("link", { name: "Download" }).count() === 0 && (await card.textContent()).includes("The link expired"), "an expired link is offered");
  }

  step("deep link ?id= replays a finished request");
  await page.goto(base + "/?id=" + copyID);
  await page.locator(`.card[data-id="${copyID}"][data-status=succeeded]`).waitFor();

  step("a job is one card with counts");
  const job = await page.evaluate(async (sfx) => {
    const r = await fetch("/api/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ items: [
      { method: "local_copy", username: "alice", local_path_on_storage: "sample/hello.txt", relative_path: `ui-${sfx}/job/1.txt` },
      { method: "local_copy", username: "alice", local_path_on_storage: "sample/hello.txt", relative_path: `ui-${sfx}/job/2.txt` },
    ] }) });
    return r.json();
  }, suffix);
  await page.goto(base + "/?job=" + job.job_id);
  const jobCard = page.locator(`.card[data-job="${job.job_id}"]`);
  await jobCard.and(page.locator("[data-status=completed]")).waitFor();
  check((await jobCard.textContent()).includes("2 succeeded of 2 item(s)"), "job counts: " + await jobCard.locator(".card-status").textContent());

  step("history: deep link ?username=, paging through the cursor, filters by status, method and date; when a staged item expires");
  await page.goto(base + "/?username=alice&limit=2");
  check(await page.getByLabel("Username", { exact: true }).nth(1).inputValue() === "alice", "?username= did not fill the history");
  await page.locator("#history-message", { hasText: "Page 1: 2 request(s) of alice" }).waitFor();
  const first = await page.locator("#history tbody tr").first().getAttribute("data-id");
  await page.getByRole("button", { name: "Older" }).click();
  await page.locator("#history-message", { hasText: "Page 2" }).waitFor();
  const second = await page.locator("#history tbody tr").first().getAttribute("data-id");
  check(first !== second, "page 2 shows page 1 again");
  await page.getByRole("button", { name: "Newer" }).click();
  await page.locator("#history-message", { hasText: "Page 1" }).waitFor();
  await page.goto(base + "/?username=alice&limit=100");
  await page.getByLabel("Method", { exact: true }).nth(1).selectOption("direct_download");
  await page.getByRole("button", { name: "Show history" }).click();
  await page.locator("#history-message", { hasText: /Page 1: \d+ request\(s\) of alice \(method direct_download\)/ }).waitFor();
  const methods = await page.locator("#history tbody tr td:nth-child(2)").allTextContents();
  check(methods.length > 0 && methods.every((m) => m === "direct_download"), "method filter: " + methods.join(","));
  await page.getByLabel("Method", { exact: true }).nth(1).selectOption("");
  await page.getByLabel("Status", { exact: true }).selectOption("rejected");
  await page.getByRole("button", { name: "Show history" }).click();
  await page.locator("#history-message", { hasText: "(status rejected)" }).waitFor();
  await page.locator("#history tbody tr", { hasText: `ui-${suffix}/bad` }).waitFor();
  const statuses = await page.locator("#history tbody .status").allTextContents();
  check(statuses.every((s) => s === "rejected"), "status filter: " + statuses.join(","));
  await page.getByLabel("Status", { exact: true }).selectOption("");
  const yesterday = new Date(Date.now() - 86400000).toLocaleDateString("en-CA");
  await page.getByLabel("To", { exact: true }).fill(yesterday);
  await page.getByRole("button", { name: "Show history" }).click();
  await page.locator("#history-message", { hasText: "No request(s) of alice (to " + yesterday + ")" }).waitFor();
  await page.getByLabel("To", { exact: true }).fill("");
  await page.getByLabel("From", { exact: true }).fill(new Date().toLocaleDateString("en-CA"));
  await page.getByRole("button", { name: "Show history" }).click();
  await page.locator("#history-message", { hasText: /Page 1: \d+ request\(s\) of alice \(from / }).waitFor();
  const cell = await page.locator("#history tbody tr", { hasText: `ui-${suffix}/hello.txt` }).locator("td").first().textContent();
  check(!/\.\d{4,}/.test(cell) && cell.length > 8, "time shown as: " + cell);
  await page.locator("#history tbody tr", { hasText: `ui-${suffix}/kept.txt` }).filter({ hasText: "expires" }).waitFor();
  const forever = await page.locator("#history tbody tr", { hasText: `ui-${suffix}/hello.txt` }).textContent();
  check(!forever.includes("expires"), "a request kept for ever shows an expiry: " + forever);

  step("logs: the UI's own polling is left out; level, service and text filters; pause");
  await page.locator("#logs li").first().waitFor();
  const own = () => page.locator("#logs li", { hasText: "route=/logs/" }).count();
  check(await own() === 0, "the UI's own /logs/ polling is shown");
  await page.getByLabel("Show the UI's own requests").check();
  check(await own() > 0, "the UI's own requests cannot be shown");
  await page.getByLabel("Show the UI's own requests").uncheck();
  await page.getByLabel("Search", { exact: true }).fill("route=/api/v1/stagings");
  const found = await page.locator("#logs li").allTextContents();
  check(found.length > 0 && found.every((l) => l.includes("route=/api/v1/stagings")), "search: " + found.slice(0, 3).join(" | "));
  await page.getByLabel("Search", { exact: true }).fill("");
  await page.getByLabel("Level", { exact: true }).selectOption("WARN");
  const levels = await page.locator("#logs li .lvl").allTextContents();
  check(levels.every((l) => l === "WARN" || l === "ERROR"), "level filter: " + levels.slice(0, 5).join(","));
  await page.getByLabel("Level", { exact: true }).selectOption("");
  // The all-in-one is one service, stagingd; its components are offered too.
  await page.getByLabel("Service", { exact: true }).selectOption("stagingd/stager");
  const services = await page.locator("#logs li").allTextContents();
  check(services.length > 0 && services.every((s) => s.includes("component=stager")), "service filter: " + services.slice(0, 3).join(" | "));
  await page.getByLabel("Service", { exact: true }).selectOption("");
  await page.getByLabel("Pause", { exact: true }).check();
  await page.locator("#logs-message", { hasText: "Paused." }).waitFor();
  await page.getByLabel("Pause", { exact: true }).uncheck();

  step("demo file creation (demo mode is on)");
  await page.locator("#demo").waitFor({ state: "visible" });
  await page.getByLabel("Path under the storage root").fill(`demo/ui-${suffix}.txt`);
  await page.getByRole("button", { name: "Create file" }).click();
  await page.locator("#demo-message", { hasText: "Created" }).waitFor();

  check(!problems.length, problems.join("\n"));

  step("screenshots: the main view, then whole pages at two widths");
  await page.goto(base + "/?username=alice");
  await stage("direct_download", "sample/tree", `ui-${suffix}/tree-link`);
  await page.locator(".card[data-status=succeeded]").waitFor();
  await page.locator("#history tbody tr").first().waitFor();
  await page.getByRole("button", { name: "Browse the storage" }).click();
  await page.getByRole("button", { name: "sample/", exact: true }).click();
  await page.locator("#browser-table tr", { hasText: "hello.txt" }).waitFor();
  await page.screenshot({ path: join(shots, "ui-main.png") });
  await page.screenshot({ path: join(shots, "ui-wide.png"), fullPage: true });
  await page.setViewportSize({ width: 400, height: 900 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, "the page is " + overflow + " px wider than a 400 px window");
  await page.screenshot({ path: join(shots, "ui-narrow.png"), fullPage: true });
  step("screenshots in " + shots);
});
