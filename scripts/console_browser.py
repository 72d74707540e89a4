"""Drives the operator console in a real headless Chromium, as an operator would.

Run by the scheduler's integration test `console` against the real api, worker and
scheduler (see services/scheduler/tests/it/console.rs), with the python of
scripts/browser-venv.sh:

    python scripts/console_browser.py --base http://127.0.0.1:PORT --key fsk_... \
        --finished JOB_ID --items N --queued JOB_ID [--batch BATCH_ID] \
        [--shadow-class CLASS] --screenshots DIR

Steps: a wrong key is refused; the key logs in; the overview shows the queue per
priority, the models and the workers; the job list shows both seeded jobs; the finished
job's page names its priority and draws one SVG group per result item, each with its
polygon, over the loaded photo (an orange among them), and its toggles hide and show
items; redelivering adds a delivery; cancelling the queued job ends it MFR.Job.ERROR
"cancelled by operator"; the Endpoints page lists the webhook endpoints, and pausing one
by hand and resuming it show in its row and in the events; the Batches page renders, and
with --batch (a batch with queued jobs) its Cancel button cancels what is left of it;
the Shadow page renders, and with --shadow-class (shadow runs seeded) its comparison
table shows that class's row with its agreement, else its empty state says how to start
shadow runs. Screenshots of the overview, the job page, the endpoints page, the batches
page and the shadow page go to DIR. Prints a JSON summary; exits non-zero with the reason on any failure.
"""

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

TIMEOUT_MS = 30_000


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium on PATH: run scripts/browser-venv.sh (installs the chromium package)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--finished", required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--queued", required=True)
    parser.add_argument("--batch", help="a batch with queued jobs, to cancel from the page")
    parser.add_argument(
        "--shadow-class",
        help="a class the seeded shadow runs have, to find in the Shadow page's comparison",
    )
    parser.add_argument("--screenshots", required=True, type=Path)
    args = parser.parse_args()
    args.screenshots.mkdir(parents=True, exist_ok=True)
    base = args.base.rstrip("/")
    summary = {}

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1360, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())

        # Not logged in: the console sends to the login page; a wrong key is refused.
        page.goto(f"{base}/console")
        expect(page).to_have_url(f"{base}/console/login")
        page.fill("#key", "fsk_this-is-not-a-key")
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("Unknown or revoked API key")
        summary["wrong_key_refused"] = True

        # The key logs in; the overview shows the models and the live worker.
        page.fill("#key", args.key)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/console")
        expect(page.locator("h1")).to_contain_text("Overview")
        expect(page.locator("#queue-interactive")).to_contain_text("oldest waiting")
        expect(page.locator("#queue-bulk")).to_contain_text("oldest waiting")
        expect(page.locator("#models")).to_contain_text("yolov5s-seg-coco")
        expect(page.locator("#workers")).to_contain_text("live")
        page.screenshot(path=str(args.screenshots / "console-overview.png"), full_page=True)

        # The job list shows both seeded jobs.
        page.goto(f"{base}/console/jobs")
        for job in (args.finished, args.queued):
            expect(page.locator(f'a.job-link:has-text("{job}")')).to_have_count(1)

        # The finished job: one SVG group per item, each with a polygon, over the photo.
        page.click(f'a.job-link:has-text("{args.finished}")')
        expect(page.locator("#job-status")).to_have_text("MFR.Job.SUCCESS")
        expect(page.locator("#job-priority")).to_have_text("interactive")
        groups = page.locator("#overlay g.item")
        expect(groups).to_have_count(args.items)
        for i in range(args.items):
            if groups.nth(i).locator("polygon").count() < 1:
                raise SystemExit(f"item {i} has no polygon")
        expect(page.locator('#overlay g.item[data-label="orange"]').first).to_be_attached()
        # The photo has loaded (polled with evaluate: the console's CSP forbids the
        # eval that wait_for_function would need).
        photo = page.locator("#photo")
        expect(photo).to_have_js_property("complete", True)
        summary["photo_width"] = photo.evaluate("img => img.naturalWidth")
        if summary["photo_width"] == 0:
            answer = page.request.get(base + photo.get_attribute("src"))
            raise SystemExit(
                f"the photo did not load: its URL answers {answer.status} "
                f"{answer.headers.get('content-type')} {answer.text()[answer.text().find('error-message'):][:300]}"
            )
        first = page.locator('input[data-toggle="0"]')
        first.uncheck()
        expect(groups.nth(0)).to_have_class("item c0 hidden")
        first.check()
        expect(groups.nth(0)).not_to_have_class("item c0 hidden")
        summary["polygons"] = page.locator("#overlay polygon").count()
        page.screenshot(path=str(args.screenshots / "console-job.png"), full_page=True)

        # Redeliver: a new delivery with a new webhook-id appears.
        before = page.locator(".delivery").count()
        page.click("#redeliver")
        expect(page.locator("#notice")).to_contain_text("Webhook redelivery queued")
        expect(page.locator(".delivery")).to_have_count(before + 1)
        summary["deliveries"] = before + 1

        # Cancel the queued job (the page asks to confirm; the test accepts).
        page.goto(f"{base}/console/jobs/{args.queued}")
        expect(page.locator("#job-status")).to_have_text("MFR.Job.QUEUED")
        page.click("#cancel")
        expect(page.locator("#job-status")).to_have_text("MFR.Job.ERROR")
        expect(page.locator("#job-message")).to_have_text("cancelled by operator")
        summary["cancelled"] = True

        # Webhook endpoints, from the navigation: the webhooks above made at least one.
        # Pausing one by hand (the page asks to confirm) and resuming it show in its row.
        page.click('nav a[href="/console/endpoints"]')
        expect(page).to_have_url(f"{base}/console/endpoints")
        active = page.locator("#endpoints tbody tr[data-endpoint]:has(button.pause)").first
        expect(active.locator("td.state")).to_contain_text("active")
        endpoint = active.get_attribute("data-endpoint")
        row = page.locator(f'#endpoints tbody tr[data-endpoint="{endpoint}"]')
        row.locator("button.pause").click()
        expect(page.locator("#notice")).to_contain_text("paused by hand")
        expect(row.locator("td.state")).to_contain_text("by hand")
        expect(row.locator("td.state")).to_contain_text("console:")
        page.screenshot(path=str(args.screenshots / "console-endpoints.png"), full_page=True)
        row.locator("button.resume").click()
        expect(page.locator("#notice")).to_contain_text("Endpoint resumed")
        expect(row.locator("td.state")).to_contain_text("active")
        expect(page.locator("#endpoint-events")).to_contain_text("resumed")
        summary["endpoint_paused_and_resumed"] = endpoint

        # Batches, from the navigation. With a batch given, cancel what is left of it
        # (the page asks to confirm): its row says cancelled, by the console's key.
        page.click('nav a[href="/console/batches"]')
        expect(page).to_have_url(f"{base}/console/batches")
        expect(page.locator("h1")).to_contain_text("Batches")
        expect(page.locator("#batches")).to_be_visible()
        summary["batches_page"] = True
        if args.batch:
            row = page.locator(f'#batches tbody tr[data-batch="{args.batch}"]')
            expect(row.locator("progress")).to_be_attached()
            row.locator("button.cancel").click()
            expect(page.locator("#notice")).to_contain_text("Batch cancelled")
            expect(row.locator("td.state")).to_contain_text("cancelled")
            expect(row.locator("td.state")).to_contain_text("console:")
            expect(row.locator("button.cancel")).to_have_count(0)
            summary["batch_cancelled"] = args.batch
        page.screenshot(path=str(args.screenshots / "console-batches.png"), full_page=True)

        # Shadow runs, from the navigation: with runs seeded, the pair that ran last is
        # compared by default and the class has its row; without, the empty state.
        page.click('nav a[href="/console/shadow"]')
        expect(page).to_have_url(f"{base}/console/shadow")
        expect(page.locator("h1")).to_contain_text("Shadow runs")
        if args.shadow_class:
            expect(page.locator("#pairs tbody tr[data-pair]").first).to_be_visible()
            row = page.locator(f'#classes tbody tr[data-class="{args.shadow_class}"]')
            expect(row).to_be_visible()
            expect(row.locator("td.agreement")).to_have_text(re.compile(r"^(0|1)\.\d\d$"))
            expect(page.locator("#times")).to_contain_text("p95")
            summary["shadow_agreement"] = row.locator("td.agreement").inner_text()
        else:
            expect(page.locator("#no-shadow")).to_contain_text("No shadow runs yet")
            expect(page.locator("#no-shadow")).to_contain_text("FOODSEG_SHADOW")
            summary["shadow_page"] = "empty"
        page.screenshot(path=str(args.screenshots / "console-shadow.png"), full_page=True)

        if errors:
            raise SystemExit(f"JavaScript errors on the pages: {errors}")
        browser.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
