#!/usr/bin/env python3
"""CronJob triggers on 3 real nodes (loopback): how late each scheduled time
fires, and how many Jobs each time makes.

20 CronJobs run every minute for 4 minutes. At the second time, one node
(the trigger of about a third of them) is killed with kill -9 2 s before the
time and restarted 15 s after it. The delay of a time is the write time of
its Job (the hybrid-logical-clock stamp in its resourceVersion) minus the
scheduled time; all nodes share the machine's clock.

Usage: python3 bench/cron.py        (SHOAL_BIN=target/debug/shoal to skip the release build)
"""
import calendar, os, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shoalbench import BIN, build, cluster, pct, stop_all  # noqa: E402

N = 20
FAST = """
[membership]
settle_time = "1s"
"""


def cronjob(i):
    return {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": f"c{i:02}"},
        "spec": {"schedule": "* * * * *", "successfulJobsHistoryLimit": 10, "jobTemplate": {"spec": {"template": {
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "command": ["true"]}]}}}}},
    }


def until(t):
    while time.time() < t:
        time.sleep(min(0.05, max(0.0, t - time.time())))


def ntp_secs(rv):
    t = int(rv.split(".")[0])
    return (t >> 32) + (t & 0xFFFFFFFF) / 2**32  # uhlc NTP64, counted from the unix epoch


def main():
    build()
    tmp = tempfile.mkdtemp(prefix="shoal-cron-")
    nodes, _ = cluster(3, tmp, "127.0.77.", FAST)
    try:
        for i in range(N):
            nodes[0].req("POST", "/apis/batch/v1/namespaces/default/cronjobs", cronjob(i))
        first = (int(time.time()) + 10 + 59) // 60 * 60
        times = [first + 60 * k for k in range(4)]
        until(times[1] - 3)
        victim = nodes[1]
        cjs = nodes[0].get("/apis/batch/v1/namespaces/default/cronjobs")["items"]
        owned = sorted(c["metadata"]["name"] for c in cjs if (c["status"].get("triggerNodes") or [""])[0] == victim.name)
        until(times[1] - 2)
        victim.kill9()
        until(times[1] + 15)
        victim.start()
        until(times[3] + 20)
        jobs = nodes[0].get("/apis/batch/v1/namespaces/default/jobs")["items"]
        per_time, delays, victims = {}, {t: [] for t in times}, []
        for j in jobs:
            a = j["metadata"].get("annotations", {})
            ts = a.get("batch.kubernetes.io/cronjob-scheduled-timestamp")
            if not ts:
                continue
            t = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
            per_time[t] = per_time.get(t, 0) + 1
            if t in delays:
                d = ntp_secs(j["metadata"]["resourceVersion"]) - t
                delays[t].append(d)
                if t == times[1] and j["metadata"]["ownerReferences"][0]["name"] in owned:
                    victims.append(d)
        print(f"{N} CronJobs, every minute, 3 nodes; node {victim.name} killed 2 s before time 2\n")
        print("| time | Jobs (of 20) | delay p50 (ms) | p99 | max |")
        print("|---|---|---|---|---|")
        for k, t in enumerate(times):
            d = sorted(delays[t])
            row = f"{pct(d, 50) * 1000:.0f} | {pct(d, 99) * 1000:.0f} | {d[-1] * 1000:.0f}" if d else "- | - | -"
            print(f"| {k + 1}{' (node killed)' if k == 1 else ''} | {per_time.get(t, 0)} | {row} |")
        if victims:
            v = sorted(victims)
            print(f"\ntime 2, the {len(owned)} CronJobs whose trigger node was killed: delay p50 "
                  f"{pct(v, 50) * 1000:.0f} ms, max {v[-1] * 1000:.0f} ms")
        calm = sorted(x for k, t in enumerate(times) if k != 1 for x in delays[t])
        if calm:
            print(f"\ncalm times: {len(calm)} Jobs, delay p50 {pct(calm, 50) * 1000:.0f} ms, "
                  f"p99 {pct(calm, 99) * 1000:.0f} ms")
        extra = {t: c for t, c in per_time.items() if t not in times}
        print(f"Jobs for other times: {extra or 'none'}")
    finally:
        stop_all(nodes)


if __name__ == "__main__":
    main()
