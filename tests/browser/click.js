// Drives the status page in Debian's chromium through playwright-core (no browser download):
// clicks "Test connection" on a destination and "Send a test trace" on a pipeline, waits for
// each answer and for the page's own refresh, takes a full-page screenshot, and prints what
// happened as JSON on stdout, with every URL the page requested.
//
//   node click.js <status page URL> <screenshot path> <destination id> <pipeline>
//
// CHROMIUM: the browser binary (default /usr/bin/chromium). PROXY: where Chromium sends
// anything that is not loopback (the test's recording proxy), so nothing leaves the machine.
const { chromium } = require('playwright-core');

async function main() {
  const [url, shot, destination, pipeline] = process.argv.slice(2);
  const args = ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
    '--disable-background-networking', '--disable-component-update', '--no-first-run',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'];
  if (process.env.PROXY) { args.push(`--proxy-server=http://${process.env.PROXY}`); }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args, headless: true,
  });
  const out = { requests: [], errors: [] };
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('request', (r) => out.requests.push(r.url()));
    page.on('pageerror', (e) => out.errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') { out.errors.push(m.text()); } });
    await page.goto(url, { waitUntil: 'load' });
    const result = page.locator('#result');

    await page.click(`button[data-action="test-connection"][data-destination="${destination}"]`);
    await page.waitForFunction(() => /connection test (passed|FAILED)/.test(
      document.getElementById('result').textContent), null, { timeout: 30000 });
    out.testConnection = await result.textContent();

    await page.selectOption('#pipeline', pipeline);
    await page.click('button[data-action="send-test-trace"]');
    await page.waitForFunction(() => /^sent test trace|NOT sent/m.test(
      document.getElementById('result').textContent), null, { timeout: 60000 });
    out.sendTestTrace = await result.textContent();

    // The page refreshes its live part by itself.
    const before = await page.locator('#collected').textContent();
    await page.waitForFunction((b) => document.getElementById('collected').textContent !== b,
      before, { timeout: 20000 });
    out.refreshed = true;
    out.destinationRowAfterRefresh = await page
      .locator(`tr[data-destination="${destination}"]`).textContent();
    await page.screenshot({ path: shot, fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });
