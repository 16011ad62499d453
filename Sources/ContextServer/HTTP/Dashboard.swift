/// The dashboard served at `/`: plain HTML, CSS and a JavaScript module, no build step. The
/// files are kept here as text, in the binary itself, so an executable copied anywhere serves
/// them (SwiftPM's resource bundles live beside the executable on Linux, and a missing bundle
/// traps). Every call the page makes goes through the HTTP API (it has no private endpoint),
/// with the key the user signs in with (kept in `sessionStorage`). Text from memories is only
/// ever set as `textContent`: a memory holding markup runs nothing.
enum Dashboard {
    /// The files by path, with their content types.
    static let files: [String: (type: String, body: String)] = [
        "/": ("text/html; charset=utf-8", indexHTML),
        "/dashboard/app.js": ("text/javascript; charset=utf-8", appJS),
        "/dashboard/style.css": ("text/css; charset=utf-8", styleCSS),
    ]

    static let indexHTML = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>ContextStore</title>
        <link rel="stylesheet" href="/dashboard/style.css">
        <script type="module" src="/dashboard/app.js"></script>
        </head>
        <body>
        <header>
          <strong>ContextStore</strong>
          <nav id="nav" hidden>
            <a href="#overview">Overview</a>
            <a href="#users">Users</a>
            <a href="#search">Search</a>
            <a href="#prompt">Prompt</a>
            <a href="#cluster">Cluster</a>
            <a href="#keys">Keys</a>
          </nav>
          <span id="who"></span>
        </header>
        <main>
          <section id="signin">
            <h1>Sign in</h1>
            <p>A key's secret (any secret works on a server without keys).</p>
            <form id="signin-form">
              <input id="secret" type="password" autocomplete="off" placeholder="secret">
              <button id="signin-button" type="submit">Sign in</button>
            </form>
            <p id="signin-error" class="error"></p>
          </section>

          <section id="overview" hidden>
            <h1>Overview</h1>
            <div class="cards">
              <div class="card"><span>memories</span><b id="stat-memories">–</b></div>
              <div class="card"><span>users</span><b id="stat-users">–</b></div>
              <div class="card"><span>space</span><b id="stat-space">–</b></div>
              <div class="card"><span>on disk</span><b id="stat-disk">–</b></div>
              <div class="card"><span>index in memory</span><b id="stat-memory">–</b></div>
              <div class="card"><span>resident (RSS)</span><b id="stat-rss">–</b></div>
              <div class="card"><span>result cache hits</span><b id="stat-cache">–</b></div>
              <div class="card"><span>sampled recall</span><b id="stat-recall">–</b></div>
            </div>
            <h2>Requests per second</h2>
            <svg id="rate-chart" width="600" height="120" role="img" aria-label="requests per second"></svg>
            <h2>Latency by op <span class="meta">(milliseconds, over the last <span id="latency-window">0</span> s)</span></h2>
            <table id="ops"><thead><tr><th>op</th><th>requests</th><th>errors</th><th>p50</th><th>p95</th><th>p99</th></tr></thead><tbody></tbody></table>
            <div id="overview-slow" hidden>
              <h2>Slow requests <span class="meta">(the latest; all of them under Keys)</span></h2>
              <table class="slow"><thead><tr><th>at</th><th>op</th><th>key</th><th>ms</th><th>outcome</th><th>door</th></tr></thead><tbody></tbody></table>
            </div>
          </section>

          <section id="users" hidden>
            <h1>Users</h1>
            <form id="user-form"><input id="user-id" placeholder="user id or its beginning"><button type="submit">Find</button></form>
            <p id="user-error" class="error"></p>
            <ul id="user-list"></ul>
            <button id="more-users" hidden>More users</button>
            <h2 id="user-title"></h2>
            <button id="forget-user" hidden>Forget this user</button>
            <table id="sessions"><thead><tr><th>session</th><th>turns</th><th>first</th><th>last</th><th></th></tr></thead><tbody></tbody></table>
            <h2 id="conversation-title"></h2>
            <ol id="conversation"></ol>
            <button id="more-turns" hidden>More</button>
          </section>

          <section id="search" hidden>
            <h1>Search</h1>
            <form id="search-form">
              <input id="search-user" placeholder="user id">
              <input id="search-query" placeholder="query">
              <select id="search-mode"><option>hybrid</option><option>vector</option><option>keyword</option></select>
              <label>k <input id="search-k" type="number" min="1" max="100" value="5"></label>
              <button type="submit">Search</button>
              <div class="filters">
                <input id="search-session" placeholder="session (optional)">
                <select id="search-role"><option value="">any role</option><option>user</option><option>assistant</option><option>system</option><option>tool</option></select>
                <input id="search-where" placeholder='metadata, e.g. {"topic": "travel"}'>
                <label>half-life (s) <input id="search-half-life" type="number" min="0" step="any" placeholder="off"></label>
                <label>context turns <input id="search-context" type="number" min="0" max="10" value="0"></label>
              </div>
            </form>
            <p id="search-error" class="error"></p>
            <ol id="hits"></ol>
          </section>

          <section id="prompt" hidden>
            <h1>Prompt preview</h1>
            <form id="prompt-form">
              <input id="prompt-user" placeholder="user id">
              <input id="prompt-query" placeholder="the user's message">
              <input id="prompt-session" placeholder="current session (optional)">
              <input id="prompt-template" placeholder="template (optional)">
              <select id="prompt-format"><option>text</option><option>messages</option></select>
              <label>budget <input id="prompt-budget" type="range" min="64" max="4096" step="32" value="1024">
                <output id="prompt-budget-value">1024</output></label>
              <button type="submit">Build</button>
            </form>
            <p id="prompt-error" class="error"></p>
            <div id="token-bar" class="token-bar"></div>
            <p id="token-total" class="meta"></p>
            <pre id="prompt-text" class="prompt-text"></pre>
            <h2>Dropped</h2>
            <table id="dropped"><thead><tr><th>id</th><th>reason</th></tr></thead><tbody></tbody></table>
          </section>

          <section id="cluster" hidden>
            <h1>Cluster</h1>
            <p id="cluster-note" class="meta"></p>
            <table id="nodes"><thead><tr><th>node</th><th>address</th><th>live</th></tr></thead><tbody></tbody></table>
            <table id="ranges"><thead><tr><th>range</th><th>hosts</th><th>joining</th><th>last</th><th>snapshot</th><th>applied here</th><th>lag</th></tr></thead><tbody></tbody></table>
          </section>

          <section id="keys" hidden>
            <h1>Keys</h1>
            <p id="keys-note" class="meta"></p>
            <table id="key-list"><thead><tr><th>name</th><th>role</th><th>users</th><th>rate</th></tr></thead><tbody></tbody></table>
            <h2>Slow requests</h2>
            <p id="slow-note" class="meta"></p>
            <table id="slow-list" class="slow"><thead><tr><th>at</th><th>op</th><th>key</th><th>ms</th><th>outcome</th><th>door</th></tr></thead><tbody></tbody></table>
          </section>
        </main>
        </body>
        </html>

        """#

    static let styleCSS = #"""
        body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
        header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1.2em; background: #1d2330; color: #fff; }
        header a { color: #cfe0ff; margin-right: 1em; text-decoration: none; }
        #who { margin-left: auto; opacity: .8; }
        main { padding: 1em 1.2em; max-width: 1100px; }
        .cards { display: flex; gap: 1em; flex-wrap: wrap; }
        .card { background: #fff; border-radius: 6px; padding: .8em 1em; min-width: 9em; box-shadow: 0 1px 2px #0002; }
        .card span { display: block; color: #667; font-size: 12px; }
        .card b { font-size: 22px; }
        table { border-collapse: collapse; margin-top: 1em; background: #fff; }
        td, th { padding: .3em .8em; border-bottom: 1px solid #e3e6ea; text-align: left; }
        .error { color: #b00020; }
        ol li { background: #fff; margin: .4em 0; padding: .5em .8em; border-radius: 4px; }
        .meta { color: #667; font-size: 12px; }
        .bar { display: inline-block; height: .7em; background: #4a7bd0; margin-right: .4em; vertical-align: middle; }
        .bar.keyword { background: #d08a4a; }
        .bar.recency { background: #5aa36b; }
        svg { background: #fff; border-radius: 6px; }
        button:disabled { opacity: .5; }
        .token-bar { display: flex; height: 1.6em; margin: 1em 0 .3em; max-width: 900px; background: #fff; }
        .token-bar span { overflow: hidden; white-space: nowrap; font-size: 11px; color: #fff; padding: .3em; box-sizing: border-box; }
        .part-system { background: #6b7280; } .part-pinned { background: #8e5bd0; } .part-memories { background: #4a7bd0; }
        .part-summary { background: #d08a4a; } .part-recent { background: #5aa36b; } .part-query { background: #c04a6b; }
        .part-free { background: #e3e6ea; color: #445 !important; }
        .prompt-text span { border-radius: 2px; }
        .prompt-text .part-system, .prompt-text .part-pinned, .prompt-text .part-memories, .prompt-text .part-summary,
        .prompt-text .part-recent, .prompt-text .part-query { color: #fff; }
        .filters { margin-top: .5em; display: flex; gap: .6em; flex-wrap: wrap; }
        .bar.fused { background: #8e5bd0; }
        .context { margin: .3em 0 0 1em; border-left: 3px solid #e3e6ea; padding-left: .6em; }
        pre { white-space: pre-wrap; background: #fff; padding: .8em; border-radius: 6px; max-width: 900px; }

        """#

    static let appJS = #"""
        // The dashboard: every call through the HTTP API with the signed-in key.
        const $ = (id) => document.getElementById(id);
        let role = null;

        // One API call; answers the JSON object, throws the API's error message.
        async function api(method, path, body) {
          const headers = {};
          const secret = sessionStorage.getItem("contextstore-secret");
          if (secret) headers["Authorization"] = "Bearer " + secret;
          if (body !== undefined) headers["Content-Type"] = "application/json";
          const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
          const answer = await response.json();
          if (!answer.ok) throw new Error(answer.error.code + ": " + answer.error.message);
          return answer;
        }

        // An element with text set as text: nothing in a memory is ever read as markup.
        function element(tag, text, className) {
          const node = document.createElement(tag);
          if (text !== undefined && text !== null) node.textContent = String(text);
          if (className) node.className = className;
          return node;
        }

        const users = (user) => "/v1/users/" + encodeURIComponent(user);
        const when = (ms) => (ms === null || ms === undefined ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 19));
        const bytes = (n) => (n > 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : (n / 1024).toFixed(1) + " KiB");

        async function signIn(secret) {
          sessionStorage.setItem("contextstore-secret", secret);
          try {
            const answer = await api("POST", "/v1/ops/auth", { secret });
            role = answer.role;
            $("who").textContent = (answer.key || "no keys") + " (" + role + ")";
            $("nav").hidden = false;
            show(location.hash.slice(1) || "overview");
          } catch (error) {
            sessionStorage.removeItem("contextstore-secret");
            $("signin-error").textContent = error.message;
          }
        }

        let polling = null;
        const pages = ["signin", "overview", "users", "search", "prompt", "cluster", "keys"];
        function show(page) {
          if (!pages.includes(page)) page = "overview";
          for (const id of pages) $(id).hidden = id !== page;
          if (page === "cluster") cluster();
          if (page === "keys") keys();
          clearInterval(polling);
          if (page === "overview") {
            overview();
            polling = setInterval(overview, 2000);
          }
        }

        // The samples of Prometheus' text format: name, labels (in any order) and value.
        function metricSamples(text) {
          const samples = [];
          for (const line of text.split("\n")) {
            const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
            if (!match) continue;
            const labels = {};
            for (const label of (match[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
              labels[label[1]] = label[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
            }
            samples.push({ name: match[1], labels, value: Number(match[3]) });
          }
          return samples;
        }

        // Latency percentiles from two readings of the cumulative histogram: the requests
        // between them, interpolated within their bucket (as Prometheus' histogram_quantile).
        function percentile(newer, older, q) {
          const bounds = Object.keys(newer).map(Number).sort((a, b) => a - b);
          const count = (le) => newer[le] - ((older && older[le]) || 0);
          const total = count(Infinity);
          if (!total) return null;
          let lower = 0, below = 0;
          for (const le of bounds) {
            const within = count(le);
            if (within >= q * total) {
              if (le === Infinity) return lower;
              return lower + ((le - lower) * (q * total - below)) / Math.max(1, within - below);
            }
            lower = le;
            below = within;
          }
          return null;
        }

        // Overview: the counts, requests per second, latency by op over the last minutes, and
        // the latest slow requests (an admin's).
        const rates = [];
        const readings = [];
        const latencyWindow = 5 * 60 * 1000;
        async function overview() {
          const stats = await api("GET", "/v1/stats");
          $("stat-memories").textContent = stats.memories;
          $("stat-users").textContent = stats.users;
          $("stat-space").textContent = stats.dimension + "-d " + stats.metric + " " + stats.index;
          $("stat-disk").textContent = bytes(stats.bytes_on_disk);
          $("stat-memory").textContent = bytes(stats.bytes_in_memory);
          const lookups = stats.result_cache_hits + stats.result_cache_misses;
          $("stat-cache").textContent = lookups ? Math.round((100 * stats.result_cache_hits) / lookups) + "%" : "–";
          const secret = sessionStorage.getItem("contextstore-secret");
          const response = await fetch("/metrics", { headers: secret ? { Authorization: "Bearer " + secret } : {} });
          if (!response.ok) return;
          const counts = {}, buckets = {};
          for (const sample of metricSamples(await response.text())) {
            const op = sample.labels.op;
            if (sample.name === "contextstore_requests_total") {
              const entry = (counts[op] ||= { requests: 0, errors: 0 });
              entry.requests += sample.value;
              if (sample.labels.outcome !== "ok") entry.errors += sample.value;
            } else if (sample.name === "contextstore_request_duration_seconds_bucket") {
              (buckets[op] ||= {})[sample.labels.le === "+Inf" ? Infinity : Number(sample.labels.le)] = sample.value;
            } else if (sample.name === "process_resident_memory_bytes") {
              $("stat-rss").textContent = bytes(sample.value);
            } else if (sample.name === "contextstore_sampled_recall") {
              $("stat-recall").textContent = sample.value.toFixed(3);
            }
          }
          const total = Object.values(counts).reduce((sum, entry) => sum + entry.requests, 0);
          const now = Date.now();
          const last = readings[readings.length - 1];
          if (last) rates.push((total - last.total) / ((now - last.at) / 1000));
          if (rates.length > 150) rates.shift();
          readings.push({ at: now, total, buckets });
          while (readings.length > 2 && now - readings[0].at > latencyWindow) readings.shift();
          chart($("rate-chart"), rates);
          const first = readings[0];
          $("latency-window").textContent = Math.round((now - first.at) / 1000);
          const body = $("ops").tBodies[0];
          body.replaceChildren();
          const milliseconds = (seconds) => (seconds === null ? "–" : (1000 * seconds).toFixed(2));
          for (const op of Object.keys(counts).sort().filter((op) => counts[op].requests > 0)) {
            const row = body.insertRow();
            row.className = "op-row";
            row.dataset.op = op;
            row.append(element("td", op), element("td", counts[op].requests), element("td", counts[op].errors));
            for (const q of [0.5, 0.95, 0.99]) {
              // Since the first reading of the window; the whole history when there is one.
              const since = readings.length > 1 ? first.buckets[op] : null;
              row.append(element("td", buckets[op] ? milliseconds(percentile(buckets[op], since, q)) : "–", "latency"));
            }
          }
          if (role === "admin") {
            $("overview-slow").hidden = false;
            slowRequests($("overview-slow").querySelector("tbody"), 10);
          }
        }

        // The latest slow requests into a table's body.
        async function slowRequests(body, limit) {
          const answer = await api("GET", "/v1/slow-requests?limit=" + limit);
          body.replaceChildren();
          for (const request of answer.requests) {
            body.insertRow().append(
              element("td", when(request.at)), element("td", request.op), element("td", request.key ?? "–"),
              element("td", request.ms.toFixed(1)), element("td", request.outcome), element("td", request.door));
          }
          return answer;
        }

        // Keys (an admin's): names, roles, users and rates, never secrets; the slow requests.
        async function keys() {
          $("key-list").tBodies[0].replaceChildren();
          $("slow-list").tBodies[0].replaceChildren();
          if (role !== "admin") {
            $("keys-note").textContent = "Keys and slow requests are an admin key's to see.";
            $("slow-note").textContent = "";
            return;
          }
          try {
            const answer = await api("GET", "/v1/keys");
            $("keys-note").textContent = answer.enabled ? answer.keys.length + " keys" : "This server has no keys (serve --keys): every client may do everything.";
            for (const key of answer.keys) {
              const rate = key.rate ? key.rate.per_second + "/s, burst " + key.rate.burst : "no limit";
              $("key-list").tBodies[0].insertRow().append(
                element("td", key.name), element("td", key.role), element("td", key.role === "admin" ? "every user" : key.users.join(", ")), element("td", rate));
            }
            const slow = await slowRequests($("slow-list").tBodies[0], 256);
            $("slow-note").textContent = "Requests that took " + slow.threshold_ms + " ms or longer (serve --slow-ms), newest first; the server keeps the latest 256.";
          } catch (error) {
            $("keys-note").textContent = error.message;
          }
        }

        // A line of the last values, drawn as SVG.
        function chart(svg, values) {
          const width = svg.width.baseVal.value, height = svg.height.baseVal.value;
          const top = Math.max(1, ...values);
          const points = values.map((value, i) => {
            const x = values.length < 2 ? 0 : (i * width) / (values.length - 1);
            return x.toFixed(1) + "," + (height - 4 - ((height - 8) * value) / top).toFixed(1);
          });
          const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
          line.setAttribute("points", points.join(" "));
          line.setAttribute("fill", "none");
          line.setAttribute("stroke", "#4a7bd0");
          line.setAttribute("stroke-width", "2");
          const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
          label.setAttribute("x", "6");
          label.setAttribute("y", "14");
          label.textContent = "max " + top.toFixed(1) + "/s";
          svg.replaceChildren(line, label);
        }

        // Users: find users by the beginning of their ids, a page at a time.
        let usersPage = null;
        async function findUsers(prefix, after) {
          $("user-error").textContent = "";
          if (!after) $("user-list").replaceChildren();
          try {
            let path = "/v1/users?limit=50&prefix=" + encodeURIComponent(prefix);
            if (after) path += "&after=" + encodeURIComponent(after);
            const page = await api("GET", path);
            for (const found of page.users) {
              const item = element("li", null, "user");
              const open = element("a", found.user, "open-user");
              open.href = "#users";
              open.onclick = (event) => {
                event.preventDefault();
                openUser(found.user);
              };
              item.append(open, element("span", " " + found.memories + " memories", "meta"));
              $("user-list").append(item);
            }
            if (!after && page.users.length === 0) $("user-error").textContent = "no user's id begins with '" + prefix + "'";
            usersPage = { prefix, next: page.next };
            $("more-users").hidden = !page.next;
          } catch (error) {
            $("user-error").textContent = error.message;
          }
        }

        // A user's sessions, a session as a conversation (paged), forget a session.
        let conversation = null;
        async function openUser(user) {
          $("user-error").textContent = "";
          $("user-title").textContent = "User " + user;
          const forgetUser = $("forget-user");
          forgetUser.hidden = false;
          forgetUser.disabled = role === "read";
          forgetUser.title = role === "read" ? "a read key cannot forget" : "";
          $("conversation").replaceChildren();
          $("conversation-title").textContent = "";
          $("more-turns").hidden = true;
          const body = $("sessions").tBodies[0];
          body.replaceChildren();
          try {
            const answer = await api("GET", users(user) + "/sessions?limit=100");
            const turns = answer.sessions.reduce((sum, session) => sum + session.turns, 0);
            forgetUser.onclick = () => forgetWholeUser(user, turns, answer.sessions.length, answer.more);
            for (const session of answer.sessions) {
              const row = body.insertRow();
              const open = element("a", session.session === null ? "(none)" : session.session);
              open.href = "#users";
              open.className = "open-session";
              open.onclick = (event) => {
                event.preventDefault();
                openSession(user, session.session);
              };
              const cell = element("td");
              cell.append(open);
              const forget = element("button", "Forget");
              forget.className = "forget-session";
              forget.disabled = role === "read" || session.session === null;
              forget.title = role === "read" ? "a read key cannot forget" : "";
              forget.onclick = () => forgetSession(user, session.session);
              const actions = element("td");
              actions.append(forget);
              row.append(cell, element("td", session.turns), element("td", when(session.first_at)), element("td", when(session.last_at)), actions);
            }
          } catch (error) {
            $("user-error").textContent = error.message;
          }
        }

        async function openSession(user, session, cursor) {
          if (!cursor) {
            $("conversation").replaceChildren();
            $("conversation-title").textContent = "Session " + (session === null ? "(none)" : session);
          }
          let path = users(user) + "/memories?limit=50";
          if (session !== null) path += "&session=" + encodeURIComponent(session);
          if (cursor) path += "&cursor=" + encodeURIComponent(cursor);
          const page = await api("GET", path);
          for (const memory of page.memories) {
            const item = element("li", null, "turn");
            const meta = [memory.speaker, memory.role, when(memory.created_at)].filter((part) => part).join(" · ");
            item.append(element("div", meta, "meta"), element("div", memory.text, "text"));
            if (Object.keys(memory.metadata).length) item.append(element("div", JSON.stringify(memory.metadata), "meta"));
            const pinned = memory.metadata.pinned === true;
            const pin = element("button", pinned ? "Unpin" : "Pin", "pin");
            const edit = element("button", "Edit metadata", "edit-metadata");
            pin.disabled = edit.disabled = role === "read";
            pin.onclick = () => changeMetadata(memory, { ...memory.metadata, pinned: !pinned });
            edit.onclick = () => {
              const text = prompt("Metadata of this memory (a JSON object):", JSON.stringify(memory.metadata));
              if (text === null) return;
              let metadata;
              try {
                metadata = JSON.parse(text);
              } catch (error) {
                $("user-error").textContent = "not JSON: " + error.message;
                return;
              }
              changeMetadata(memory, metadata);
            };
            item.append(pin, edit);
            $("conversation").append(item);
          }
          conversation = { user, session, cursor: page.next_cursor };
          $("more-turns").hidden = !page.next_cursor;
        }

        async function changeMetadata(memory, metadata) {
          try {
            await api("PATCH", users(memory.user) + "/memories/" + encodeURIComponent(memory.id), { metadata });
            await openSession(memory.user, memory.session);
          } catch (error) {
            $("user-error").textContent = error.message;
          }
        }

        async function forgetSession(user, session) {
          const name = session === null ? "the memories without a session" : "session '" + session + "'";
          if (!confirm("Forget " + name + " of user '" + user + "'? Its memories will be deleted.")) return;
          try {
            await api("DELETE", users(user) + "/sessions/" + encodeURIComponent(session));
            await openUser(user);
          } catch (error) {
            $("user-error").textContent = error.message;
          }
        }

        async function forgetWholeUser(user, turns, sessions, more) {
          const what = turns + " memories in " + sessions + (more ? "+" : "") + " sessions";
          if (!confirm("Forget user '" + user + "'? All of its memories (" + what + ") will be deleted.")) return;
          try {
            const answer = await api("DELETE", users(user));
            $("user-title").textContent = "User " + user + ": " + answer.deleted + " memories forgotten";
            $("forget-user").hidden = true;
            $("sessions").tBodies[0].replaceChildren();
            $("conversation").replaceChildren();
            $("conversation-title").textContent = "";
          } catch (error) {
            $("user-error").textContent = error.message;
          }
        }

        // Search playground: hits with the parts of their scores as bars.
        async function search() {
          $("search-error").textContent = "";
          $("hits").replaceChildren();
          const request = { query: $("search-query").value, mode: $("search-mode").value, k: Number($("search-k").value), explain: true };
          if ($("search-session").value) request.session = $("search-session").value;
          if ($("search-role").value) request.role = $("search-role").value;
          if ($("search-half-life").value) request.half_life = Number($("search-half-life").value);
          if (Number($("search-context").value)) request.context = Number($("search-context").value);
          try {
            if ($("search-where").value.trim()) request.where = JSON.parse($("search-where").value);
          } catch (error) {
            $("search-error").textContent = "metadata is not JSON: " + error.message;
            return;
          }
          try {
            const answer = await api("POST", users($("search-user").value) + "/search", request);
            // Keyword scores (BM25) and fused scores have no fixed top: bars are against the best hit's.
            const best = (part) => Math.max(1e-9, ...answer.hits.map((hit) => (hit.explain && hit.explain[part] ? hit.explain[part].score : 0)));
            const top = { keyword: best("keyword"), score: Math.max(1e-9, ...answer.hits.map((hit) => hit.score)) };
            answer.hits.forEach((hit, i) => {
              const item = element("li", null, "hit");
              item.append(element("div", hit.text, "text"));
              item.append(element("div", "score " + hit.score.toFixed(4) + " · " + (hit.session || "") + " · " + when(hit.created_at), "meta"));
              const bars = [["fused", hit.score / top.score, "rank " + (i + 1) + ", score " + hit.score.toFixed(4)]];
              const explain = hit.explain || {};
              if (explain.vector) bars.push(["vector", Math.max(0, explain.vector.score), "rank " + explain.vector.rank + ", cosine " + explain.vector.score.toFixed(3)]);
              if (explain.keyword) bars.push(["keyword", explain.keyword.score / top.keyword, "rank " + explain.keyword.rank + ", BM25 " + explain.keyword.score.toFixed(3)]);
              if (explain.recency !== null && explain.recency !== undefined) bars.push(["recency", explain.recency, "factor " + explain.recency.toFixed(3)]);
              const factors = [];
              if (explain.session) factors.push("session +" + explain.session.toFixed(4));
              if (explain.speaker) factors.push("speaker named ×" + explain.speaker);
              if (explain.time) factors.push("said in “" + explain.time.phrase + "”");
              if (factors.length) item.append(element("div", factors.join(" · "), "meta factors"));
              for (const [part, share, label] of bars) {
                const row = element("div", null, "explain " + part);
                const bar = element("span", null, "bar " + part);
                bar.style.width = Math.round(4 + 196 * Math.min(1, share)) + "px";
                row.append(bar, element("span", part + ": " + label));
                item.append(row);
              }
              if (hit.context && hit.context.length) {
                const around = element("div", null, "context");
                for (const turn of hit.context) around.append(element("div", [turn.speaker || turn.role, turn.text].filter((part) => part).join(": "), "meta"));
                item.append(around);
              }
              $("hits").append(item);
            });
          } catch (error) {
            $("search-error").textContent = error.message;
          }
        }

        // Cluster: nodes, ranges, their hosts and lag (a server that is not a node says so).
        async function cluster() {
          $("nodes").tBodies[0].replaceChildren();
          $("ranges").tBodies[0].replaceChildren();
          try {
            const answer = await api("GET", "/v1/cluster");
            $("cluster-note").textContent = "answered by " + answer.node;
            for (const node of answer.nodes) {
              $("nodes").tBodies[0].insertRow().append(element("td", node.name), element("td", node.address), element("td", node.live ? "yes" : "no"));
            }
            for (const range of answer.ranges) {
              $("ranges").tBodies[0].insertRow().append(
                element("td", range.range), element("td", range.hosts.join(", ")), element("td", range.joining.join(", ")),
                element("td", range.last), element("td", range.snapshot), element("td", range.applied ?? ""), element("td", range.lag ?? ""));
            }
          } catch (error) {
            $("cluster-note").textContent = error.message;
          }
        }

        // Prompt preview: the built prompt, its parts as a token bar, and what was dropped and why.
        async function preview() {
          $("prompt-error").textContent = "";
          const request = { query: $("prompt-query").value, budget: Number($("prompt-budget").value), format: $("prompt-format").value, spans: true };
          if ($("prompt-session").value) request.session = $("prompt-session").value;
          if ($("prompt-template").value) request.template = $("prompt-template").value;
          try {
            const answer = await api("POST", users($("prompt-user").value) + "/prompt", request);
            const bar = $("token-bar");
            bar.replaceChildren();
            const budget = request.budget;
            for (const section of answer.sections) {
              if (!section.tokens) continue;
              const part = element("span", section.name + " " + section.tokens, "part part-" + section.name);
              part.dataset.tokens = section.tokens;
              part.title = section.name + ": " + section.tokens + " tokens, " + section.ids.length + " memories";
              part.style.width = (100 * section.tokens) / budget + "%";
              bar.append(part);
            }
            if (answer.tokens < budget) {
              const free = element("span", "free " + (budget - answer.tokens), "part-free");
              free.style.width = (100 * (budget - answer.tokens)) / budget + "%";
              bar.append(free);
            }
            $("token-total").textContent = answer.tokens + " of " + budget + " tokens (" + answer.counter + ")";
            coloured($("prompt-text"), answer.prompt, answer.spans || []);
            const dropped = $("dropped").tBodies[0];
            dropped.replaceChildren();
            for (const item of answer.dropped) dropped.insertRow().append(element("td", item.id), element("td", item.reason));
          } catch (error) {
            $("prompt-error").textContent = error.message;
          }
        }

        // The prompt's text with each part (system, pinned, memories, summary, recent, query) in
        // its colour: the answer's spans are UTF-8 byte ranges of the text.
        function coloured(pre, text, spans) {
          const utf8 = new TextEncoder().encode(text);
          const decode = (start, end) => new TextDecoder().decode(utf8.subarray(start, end));
          pre.replaceChildren();
          let at = 0;
          for (const span of spans) {
            if (span.start > at) pre.append(document.createTextNode(decode(at, span.start)));
            const part = element("span", decode(span.start, span.end), "part-" + span.section);
            part.title = span.section;
            pre.append(part);
            at = span.end;
          }
          pre.append(document.createTextNode(decode(at, utf8.length)));
        }

        $("prompt-budget").oninput = () => ($("prompt-budget-value").textContent = $("prompt-budget").value);
        $("prompt-form").onsubmit = (event) => {
          event.preventDefault();
          preview();
        };
        $("signin-form").onsubmit = (event) => {
          event.preventDefault();
          signIn($("secret").value);
        };
        $("user-form").onsubmit = (event) => {
          event.preventDefault();
          findUsers($("user-id").value);
        };
        $("more-users").onclick = () => usersPage && findUsers(usersPage.prefix, usersPage.next);
        $("search-form").onsubmit = (event) => {
          event.preventDefault();
          search();
        };
        $("more-turns").onclick = () => conversation && openSession(conversation.user, conversation.session, conversation.cursor);
        window.onhashchange = () => role && show(location.hash.slice(1));
        const saved = sessionStorage.getItem("contextstore-secret");
        if (saved !== null) signIn(saved);

        """#
}
