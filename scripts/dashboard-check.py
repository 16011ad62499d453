#!/usr/bin/env python3
"""The dashboard in a real browser (Chromium through Selenium, headless), against a server it
starts with two keys: fills it through the HTTP API, then drives the pages as a user would and
checks what they show against what the API answers. Writes a screenshot of each page.

    scripts/dashboard-check          (installs what is missing, then runs this)
    CONTEXTSTORE=path SHOTS=folder scripts/dashboard-check.py

Exit status 0 when every check passed; the first failed check is printed and fails it.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTEXTSTORE = os.environ.get("CONTEXTSTORE", os.path.join(ROOT, ".build", "release", "contextstore"))
SHOTS = os.environ.get("SHOTS", os.path.join(ROOT, ".build", "dashboard-screenshots"))
ADMIN = "admin-secret-0123456789"
READER = "reader-secret-0123456789"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def call(port, method, path, body=None, secret=ADMIN):
    """One API call: (status, answer object)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print(f"ok: {what}")


def fill(port):
    turns = [
        ("s1", "user", "alice", "I just moved to Porto for a new job"),
        ("s1", "assistant", None, "Congratulations! How is the city so far?"),
        ("s1", "user", "alice", "The tram to the office is slow but the pastries are great"),
        ("s2", "user", "alice", "Remind me to water the plants on Sunday"),
        ("s3", "user", "alice", XSS),
    ]
    for i, (session, role, speaker, text) in enumerate(turns):
        memory = {"text": text, "session": session, "role": role, "created_at": 1_764_000_000_000 + i * 60_000,
                  "vector": [1.0, float(i), 0.5, 0.25]}
        if speaker:
            memory["speaker"] = speaker
        status, answer = call(port, "POST", "/v1/users/alice/memories", memory)
        assert status == 200, answer
    status, answer = call(port, "POST", "/v1/users/bob/memories", {"text": "bob's only memory", "vector": [0, 1, 0, 0]})
    assert status == 200, answer


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"]:
        options.add_argument(argument)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    work = tempfile.mkdtemp()
    keys = os.path.join(work, "keys.json")
    with open(keys, "w") as file:
        json.dump({"keys": [{"name": "admin", "secret": ADMIN, "role": "admin"},
                            {"name": "reader", "secret": READER, "role": "read", "users": ["alice"]}]}, file)
    server = subprocess.Popen([CONTEXTSTORE, "serve", "--db", os.path.join(work, "space.db"), "--port", "0",
                               "--http-port", "0", "--model", "none", "--dim", "4", "--keys", keys,
                               "--slow-ms", "0", "--log-level", "error"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    driver = None
    try:
        port = None
        for line in server.stdout:
            if line.startswith("http listening on "):
                port = int(line.rsplit(":", 1)[1])
                break
        assert port, "the server did not start"
        fill(port)
        base = f"http://127.0.0.1:{port}/"
        driver = browser()
        # Pages redraw their lists: an element read as it is replaced is read again.
        wait = WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,))

        def sign_in(secret):
            driver.get(base)
            driver.execute_script("sessionStorage.clear()")
            driver.get(base)
            driver.find_element(By.ID, "secret").send_keys(secret)
            driver.find_element(By.ID, "signin-button").click()
            wait.until(lambda d: d.find_element(By.ID, "who").text != "")

        def open_user(user):
            """Finds the user by the beginning of its id, then opens it from the list."""
            driver.get(base + "#users")
            field = driver.find_element(By.ID, "user-id")
            field.clear()
            field.send_keys(user[:2])
            driver.find_element(By.CSS_SELECTOR, "#user-form button").click()
            wait.until(lambda d: d.find_elements(By.LINK_TEXT, user))
            listed = [link.text for link in driver.find_elements(By.CLASS_NAME, "open-user")]
            check(listed == [user], f"users beginning with '{user[:2]}': {listed}")
            driver.find_element(By.LINK_TEXT, user).click()

        # Overview: the counts the API reports.
        sign_in(ADMIN)
        _, stats = call(port, "GET", "/v1/stats")
        wait.until(lambda d: d.find_element(By.ID, "stat-memories").text == str(stats["memories"]))
        check(driver.find_element(By.ID, "stat-users").text == str(stats["users"]),
              f"overview shows {stats['memories']} memories and {stats['users']} users")
        space = f"{stats['dimension']}-d {stats['metric']} {stats['index']}"
        check(driver.find_element(By.ID, "stat-space").text == space, f"and the space: {space}")
        time.sleep(2.5)  # a second poll, so the rate chart has a line
        # Latency by op over the window the page has watched: adds made while it watches.
        for i in range(5):
            call(port, "POST", "/v1/users/carol/memories", {"text": f"carol {i}", "vector": [0, 0, 1, 0]})
        wait.until(lambda d: "–" not in [cell.text for cell in
                                         d.find_elements(By.CSS_SELECTOR, "#ops tr[data-op='add'] td.latency")])
        p50, p95, p99 = [float(cell.text) for cell in
                         driver.find_elements(By.CSS_SELECTOR, "#ops tr[data-op='add'] td.latency")]
        check(0 < p50 <= p95 <= p99 <= 1000, f"the overview shows add's latency p50 {p50} <= p95 {p95} <= p99 {p99} ms")
        check(driver.find_element(By.ID, "stat-rss").text.endswith("MiB"), "and the server's resident memory")
        # --slow-ms 0: every request is slow, so the overview lists the latest.
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#overview-slow tbody tr"))
        ops = [row.find_elements(By.TAG_NAME, "td")[1].text
               for row in driver.find_elements(By.CSS_SELECTOR, "#overview-slow tbody tr")]
        check(len(ops) == 10 and set(ops) <= {"stats", "metrics", "slow_requests", "auth", "add"},
              f"and the latest slow requests: {ops}")
        driver.save_screenshot(os.path.join(SHOTS, "overview.png"))

        # Users: alice's sessions, s1 as a conversation in time order.
        open_user("alice")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 3)
        rows = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")]
        check(any(row.startswith("s1 3 2025-11-24 16:00:00 2025-11-24 16:02:00") for row in rows),
              f"the sessions table lists s1 with 3 turns and its time range: {rows}")
        driver.find_element(By.LINK_TEXT, "s1").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversation li")) == 3)
        texts = [item.find_element(By.CLASS_NAME, "text").text
                 for item in driver.find_elements(By.CSS_SELECTOR, "#conversation li")]
        check(texts == ["I just moved to Porto for a new job", "Congratulations! How is the city so far?",
                        "The tram to the office is slow but the pastries are great"],
              "session s1 shows its turns in order")
        driver.save_screenshot(os.path.join(SHOTS, "users.png"))

        # Pin a turn: its metadata changes through the API, and the button says so.
        driver.find_elements(By.CSS_SELECTOR, "#conversation li .pin")[0].click()
        wait.until(lambda d: [b.text for b in d.find_elements(By.CSS_SELECTOR, "#conversation li .pin")][:1] == ["Unpin"])
        _, listed = call(port, "GET", "/v1/users/alice/memories?session=s1&limit=1")
        check(listed["memories"][0]["metadata"] == {"pinned": True}, "pin set the first turn's metadata")

        # A memory holding markup is shown as text and runs nothing.
        driver.find_element(By.LINK_TEXT, "s3").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversation li")) == 1)
        shown = driver.find_element(By.CSS_SELECTOR, "#conversation li .text").text
        check(shown == XSS, "an XSS memory is shown as its text")
        check(driver.execute_script("return window.__xss") is None, "and none of it ran")
        check(not driver.find_elements(By.CSS_SELECTOR, "#conversation img"), "no element was made from it")

        # Search: hits with their explanations.
        driver.get(base + "#search")
        driver.find_element(By.ID, "search-user").send_keys("alice")
        driver.find_element(By.ID, "search-query").send_keys("tram office")
        Select(driver.find_element(By.ID, "search-mode")).select_by_visible_text("keyword")
        driver.find_element(By.CSS_SELECTOR, "#search-form button").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#hits li"))
        first = driver.find_element(By.CSS_SELECTOR, "#hits li")
        check("tram" in first.find_element(By.CLASS_NAME, "text").text, "the search's first hit is the tram turn")
        check(first.find_elements(By.CSS_SELECTOR, ".explain.keyword .bar"), "its explanation is drawn as a bar")
        check(first.find_elements(By.CSS_SELECTOR, ".explain.fused .bar"), "and so is its rank")
        # Filters, half-life and context: only s1's turns, a recency bar, the turns around each hit.
        driver.find_element(By.ID, "search-session").send_keys("s1")
        driver.find_element(By.ID, "search-half-life").send_keys("86400")
        context = driver.find_element(By.ID, "search-context")
        context.clear()
        context.send_keys("1")
        driver.find_element(By.ID, "search-query").clear()
        driver.find_element(By.ID, "search-query").send_keys("Porto pastries tram")
        driver.find_element(By.CSS_SELECTOR, "#search-form button").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#hits li .explain.recency"))
        _, found = call(port, "POST", "/v1/users/alice/search",
                        {"query": "Porto pastries tram", "mode": "keyword", "k": 5, "session": "s1", "half_life": 86400,
                         "context": 1, "explain": True})
        hits = driver.find_elements(By.CSS_SELECTOR, "#hits li.hit")
        check([hit.find_element(By.CLASS_NAME, "text").text for hit in hits] == [hit["text"] for hit in found["hits"]],
              f"the filtered search shows the API's {len(found['hits'])} hits of session s1 in order")
        check(all(hit.find_elements(By.CSS_SELECTOR, ".explain.recency .bar") for hit in hits), "each with a recency bar")
        check(hits[0].find_elements(By.CSS_SELECTOR, ".context div"), "and the turns around it")
        driver.save_screenshot(os.path.join(SHOTS, "search.png"))

        # Prompt preview: the token bar's parts sum to the count the API reports.
        driver.get(base + "#prompt")
        driver.find_element(By.ID, "prompt-user").send_keys("alice")
        driver.find_element(By.ID, "prompt-query").send_keys("where do I live and how do I get to work")
        driver.find_element(By.ID, "prompt-session").send_keys("s1")
        driver.execute_script("const b = document.getElementById('prompt-budget'); b.value = 512;"
                              "b.dispatchEvent(new Event('input'))")
        driver.find_element(By.CSS_SELECTOR, "#prompt-form button").click()
        wait.until(lambda d: d.find_element(By.ID, "token-total").text != "")
        _, built = call(port, "POST", "/v1/users/alice/prompt",
                        {"query": "where do I live and how do I get to work", "session": "s1", "budget": 512,
                         "format": "text"})
        parts = [int(part.get_attribute("data-tokens")) for part in driver.find_elements(By.CSS_SELECTOR, "#token-bar .part")]
        check(sum(parts) == built["tokens"] and parts, f"the token bar's parts {parts} sum to the API's {built['tokens']}")
        check(driver.find_element(By.ID, "prompt-text").text == built["prompt"].strip(), "the prompt shown is the API's")
        _, spanned = call(port, "POST", "/v1/users/alice/prompt",
                          {"query": "where do I live and how do I get to work", "session": "s1", "budget": 512,
                           "format": "text", "spans": True})
        encoded = spanned["prompt"].encode()
        expected = [(span["section"], encoded[span["start"]:span["end"]].decode()) for span in spanned["spans"]]
        shown = [(part.get_attribute("title"), part.text)
                 for part in driver.find_elements(By.CSS_SELECTOR, "#prompt-text span")]
        check(shown == expected and {"system", "query", "recent"} <= {section for section, _ in shown},
              f"its parts are coloured where the API's spans say: {[section for section, _ in shown]}")
        check(len(driver.find_elements(By.CSS_SELECTOR, "#dropped tbody tr")) == len(built["dropped"]),
              f"and so are the {len(built['dropped'])} dropped")
        driver.save_screenshot(os.path.join(SHOTS, "prompt.png"))

        # Cluster: a server that is not a node says so.
        driver.get(base + "#cluster")
        wait.until(lambda d: d.find_element(By.ID, "cluster-note").text != "")
        check("not a cluster node" in driver.find_element(By.ID, "cluster-note").text, "the cluster page on one server")
        driver.save_screenshot(os.path.join(SHOTS, "cluster.png"))

        # Forget a session, confirmed in a dialog naming it.
        open_user("alice")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 3)
        row = next(row for row in driver.find_elements(By.CSS_SELECTOR, "#sessions tbody tr") if row.text.startswith("s2 "))
        row.find_element(By.CLASS_NAME, "forget-session").click()
        dialog = wait.until(lambda d: d.switch_to.alert)
        check("session 's2'" in dialog.text and "alice" in dialog.text, f"the confirmation names what goes: {dialog.text}")
        dialog.accept()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 2)
        _, sessions = call(port, "GET", "/v1/users/alice/sessions")
        check(sorted(s["session"] for s in sessions["sessions"]) == ["s1", "s3"], "forget removed session s2")

        # Forget a whole user, confirmed in a dialog naming how much goes.
        open_user("bob")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 1)
        driver.find_element(By.ID, "forget-user").click()
        dialog = wait.until(lambda d: d.switch_to.alert)
        check("user 'bob'" in dialog.text and "1 memories in 1 sessions" in dialog.text,
              f"the confirmation names the user and what goes: {dialog.text}")
        dialog.accept()
        wait.until(lambda d: "forgotten" in d.find_element(By.ID, "user-title").text)
        _, page = call(port, "GET", "/v1/users?prefix=bo")
        check(page["users"] == [], "forget removed user bob")

        # Keys: names, roles and users, never a secret; the slow requests.
        driver.get(base + "#keys")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#key-list tbody tr")) == 2)
        rows = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#key-list tbody tr")]
        check(rows == ["admin admin every user no limit", "reader read alice no limit"], f"the keys page lists {rows}")
        check(ADMIN not in driver.page_source and READER not in driver.page_source, "and shows no secret")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#slow-list tbody tr")) > 10)
        check("0 ms or longer" in driver.find_element(By.ID, "slow-note").text, "with the log of slow requests")
        driver.save_screenshot(os.path.join(SHOTS, "keys.png"))

        # A read key cannot press write buttons, and the API refuses it anyway.
        sign_in(READER)
        open_user("alice")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 2)
        driver.find_element(By.LINK_TEXT, "s1").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversation li")) == 3)
        edits = driver.find_elements(By.CSS_SELECTOR, "#conversation li .pin, #conversation li .edit-metadata")
        check(edits and all(not button.is_enabled() for button in edits), "a read key's pin and edit buttons are disabled")
        buttons = driver.find_elements(By.CLASS_NAME, "forget-session")
        check(buttons and all(not button.is_enabled() for button in buttons), "a read key's forget buttons are disabled")
        check(not driver.find_element(By.ID, "forget-user").is_enabled(), "and so is its forget-user button")
        status, answer = call(port, "DELETE", "/v1/users/alice/sessions/s1", secret=READER)
        check(status == 403 and answer["error"]["code"] == "forbidden", "and the API refuses it (403)")
        driver.get(base + "#keys")
        wait.until(lambda d: d.find_element(By.ID, "keys-note").text != "")
        check("admin key's" in driver.find_element(By.ID, "keys-note").text
              and not driver.find_elements(By.CSS_SELECTOR, "#key-list tbody tr"), "a read key is shown no keys")
        status, answer = call(port, "GET", "/v1/keys", secret=READER)
        check(status == 403 and answer["error"]["code"] == "forbidden", "and the API refuses them (403)")
        print(f"screenshots in {SHOTS}")
    finally:
        if driver:
            driver.quit()
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"FAILED: {error}")
        sys.exit(1)
