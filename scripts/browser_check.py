#!/usr/bin/env python3
"""Open an HTML report in headless Chromium, screenshot it and check it from the page.

    browser_check.py REPORT.html SCREENSHOT.png [TEXT ...]

Talks to Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: no port,
no network). Prints one JSON object: every <img> with its natural size, every inline <svg>
with its drawn size, the row count of every table (header row excluded), the page's size
against the window's width, the text of every SVG label drawn outside its SVG's view box,
the number of rows each side-by-side sweep of figures takes, the number of error bars
drawn (chart elements of class `error-bar` with a size), whether each TEXT is in the text
the page shows (`contains`: TEXT → true or false), and every console error, uncaught
exception or failed load the page logged. Exit 0 when the page loaded, whatever it found:
the caller decides what is wrong.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe", "--window-size=1280,900",
]

PROBE = """(texts => JSON.stringify({
  images: [...document.images].map(i => ({src: i.src.slice(0, 60), complete: i.complete,
           width: i.naturalWidth, height: i.naturalHeight})),
  svgs: [...document.querySelectorAll('svg')].map(s => { const r = s.getBoundingClientRect();
           return {width: r.width, height: r.height}; }),
  tables: [...document.querySelectorAll('table')].map(t => t.querySelectorAll('tr').length - 1),
  title: document.title,
  page: {width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
         viewport: window.innerWidth},
  svg_text_outside: [...document.querySelectorAll('svg')].flatMap(s => { const v = s.viewBox.baseVal;
           return [...s.querySelectorAll('text')].filter(t => { const b = t.getBBox();
             return b.x < v.x - 0.5 || b.y < v.y - 0.5 || b.x + b.width > v.x + v.width + 0.5
                 || b.y + b.height > v.y + v.height + 0.5; }).map(t => t.textContent); }),
  sweep_rows: [...document.querySelectorAll('.sweep')].map(d =>
           new Set([...d.children].map(f => Math.round(f.getBoundingClientRect().top))).size),
  error_bars: [...document.querySelectorAll('svg .error-bar')].filter(e => { const r = e.getBoundingClientRect();
           return r.width > 0 || r.height > 0; }).length,
  contains: Object.fromEntries(texts.map(t => [t, document.body.innerText.includes(t)])),
}))"""


class Pipe:
    def __init__(self, to_browser, from_browser):
        self.out, self.inp, self.buf, self.next_id, self.events = to_browser, from_browser, b"", 0, []

    def send(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.out, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            reply = self.read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(method)

    def read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def wait_for(self, method, timeout=60):
        deadline = time.time() + timeout
        for e in self.events:
            if e.get("method") == method:
                return
        while time.time() < deadline:
            e = self.read()
            self.events.append(e)
            if e.get("method") == method:
                return
        raise TimeoutError(method)


def problems(events):
    found = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            found.append("exception: " + p.get("exceptionDetails", {}).get("text", ""))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            found.append("log: " + p["entry"].get("text", ""))
    return found


def main():
    report, screenshot, texts = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        sys.exit("chromium is not installed: `bash scripts/setup_tests.sh` installs Debian's chromium")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="difflow-chromium-")

    def child_fds():
        # Chromium reads commands on fd 3 and writes replies on fd 4; duplicate first so
        # that neither dup2 closes the other pipe end.
        read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
        os.dup2(read_end, 3)
        os.dup2(write_end, 4)

    proc = subprocess.Popen([browser, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            preexec_fn=child_fds,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False)
    os.close(to_browser_r)
    os.close(from_browser_w)
    try:
        pipe = Pipe(to_browser_w, from_browser_r)
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            pipe.send(domain, session=session)
        pipe.send("Page.navigate", {"url": "file://" + report}, session=session)
        pipe.wait_for("Page.loadEventFired")
        probe = pipe.send("Runtime.evaluate", {"expression": f"{PROBE}({json.dumps(texts)})", "returnByValue": True}, session=session)
        found = json.loads(probe["result"]["value"])
        shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        found["problems"] = problems(pipe.events)
        try:
            pipe.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError):
            pass
        print(json.dumps(found))
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
