// What both browser tests share: Debian's chromium through playwright-core,
// and the way they report.
import { chromium } from "playwright-core";

export const base = process.env.STAGING_UI_URL;
if (!base) {
  console.error("STAGING_UI_URL is not set");
  process.exit(2);
}

export const step = (what) => console.log("ui-test: " + what);
export const check = (ok, what) => { if (!ok) throw new Error(what); };

// run opens a browser, hands test a fresh context, and exits non-zero,
// saying why, when test throws.
export async function run(test) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  let failed = false;
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    await test(context);
    step("PASS");
  } catch (err) {
    failed = true;
    console.error("ui-test: FAIL: " + (err && err.stack ? err.stack : err));
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}
