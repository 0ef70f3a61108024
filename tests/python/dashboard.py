"""Drives Shoal's dashboard in a real headless browser (Debian's chromium
through chromedriver, with selenium from PyPI), for tests/dashboard.rs.

It logs in (a wrong token first), waits until the page shows every node
Ready and the workload's replicas placed and Ready, takes a screenshot,
prints READY and waits for a line on stdin (the test kills a node), then
waits until the page shows that node Dead, every replica Ready on the
other nodes and the event of the death, takes a second screenshot and
prints `OK <seconds>`.
"""

import argparse
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def wait(what, f, secs):
    deadline = time.time() + secs
    last = None
    while time.time() < deadline:
        try:
            got = f()
            if got:
                return got
            last = got
        except WebDriverException as e:
            last = e
        time.sleep(0.1)
    raise SystemExit(f"timed out after {secs} s waiting for {what}; last: {last}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--nodes", required=True)
    ap.add_argument("--victim", required=True)
    ap.add_argument("--workload", required=True, help="namespace/name of a Deployment")
    ap.add_argument("--replicas", type=int, required=True)
    ap.add_argument("--shots", required=True, help="screenshot path prefix")
    args = ap.parse_args()
    nodes = args.nodes.split(",")
    name = args.workload.split("/")[1]

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    # The API's certificate comes from the cluster's own CA, which this
    # throwaway browser profile does not hold.
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100",
              "--ignore-certificate-errors"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(args.url)
        token_box = wait("the login form", lambda: driver.find_element(By.ID, "token"), 15)
        token_box.send_keys("not-the-token")
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        wait("the refusal", lambda: "refused" in driver.find_element(By.ID, "login-error").text, 10)
        assert not driver.find_element(By.ID, "main").is_displayed(), "a wrong token showed the cluster"
        driver.find_element(By.ID, "token").send_keys(args.token)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        assert args.token not in driver.current_url, "the token went into the URL"

        def state(node):
            rows = driver.find_elements(By.CSS_SELECTOR, f'#nodes tr[data-node="{node}"]')
            return rows[0].get_attribute("data-state") if rows else None

        def placed():
            """node -> number of Ready replicas of the workload drawn there."""
            out = {}
            for chip in driver.find_elements(By.CSS_SELECTOR, ".chip"):
                pod = chip.get_attribute("data-pod") or ""
                if pod.split("/")[1].startswith(name + "-") and "unready" not in chip.get_attribute("class"):
                    out[chip.get_attribute("data-node")] = out.get(chip.get_attribute("data-node"), 0) + 1
            return out

        wait("every node Ready", lambda: all(state(n) == "Ready" for n in nodes), 30)
        # Read inside `wait`: the page redraws as it polls, and a chip read
        # between two draws is stale (a WebDriverException `wait` retries).
        before = wait(f"{args.replicas} Ready replicas drawn",
                      lambda: (lambda p: p if sum(p.values()) == args.replicas else None)(placed()), 30)
        wait("gossip bandwidth figures", lambda: all(
            "/s" in driver.find_element(By.CSS_SELECTOR, f'td[data-bandwidth="{n}"]').text for n in nodes), 15)
        wait("the workload's rollout", lambda: driver.find_elements(By.CSS_SELECTOR, f'tr[data-workload="{args.workload}"]'), 10)
        wait("events", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")) > 0, 10)
        wait("the service's endpoints", lambda: driver.find_element(
            By.CSS_SELECTOR, 'tr[data-service="default/web"]').text.count(" on ") == args.replicas, 10)
        # Links to the other nodes' dashboards, for when this one dies.
        wait("links to the other nodes' dashboards", lambda: sorted(
            a.get_attribute("data-other") for a in driver.find_elements(By.CSS_SELECTOR, "#others a")) == nodes[1:], 10)
        driver.save_screenshot(args.shots + "-before.png")
        print(f"READY {before}", flush=True)
        sys.stdin.readline()
        t = time.time()
        wait(f"{args.victim} shown Dead", lambda: state(args.victim) == "Dead", 30)
        dead_after = time.time() - t

        def moved():
            """The placement once every replica is Ready off the victim, else None."""
            p = placed()
            return p if sum(p.values()) == args.replicas and args.victim not in p else None

        wait(f"every replica Ready off {args.victim}", moved, 30)
        moved_after = time.time() - t
        wait(f"the event of {args.victim}'s death", lambda: any(
            f"node {args.victim} is Dead" in r.text for r in driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")), 10)
        # A dead node has no bandwidth figure, and serves no endpoint.
        wait(f"no gossip figure for {args.victim}", lambda: "/s" not in driver.find_element(
            By.CSS_SELECTOR, f'td[data-bandwidth="{args.victim}"]').text, 10)
        wait("the service's endpoints off the dead node", lambda: (lambda t: t.count(" on ") == args.replicas
             and f" on {args.victim}" not in t)(driver.find_element(By.CSS_SELECTOR, 'tr[data-service="default/web"]').text), 15)
        # The dead node's column is drawn as dead.
        wait(f"{args.victim}'s column drawn dead", lambda: "dead" in driver.find_element(
            By.CSS_SELECTOR, f'.column[data-column="{args.victim}"]').get_attribute("class"), 10)
        driver.save_screenshot(args.shots + "-after.png")
        after = wait("the placement", moved, 10)
        print(f"OK dead-shown {dead_after:.1f} s, replicas-moved {moved_after:.1f} s, placement {after}", flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
