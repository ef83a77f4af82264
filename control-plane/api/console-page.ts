/**
 * The operator page at `/`: the first 100 devices (status, health with its reasons, last seen, fps per camera,
 * refreshed every 5 s; a silent device's figures show as stale, never as current) and a
 * live list of events with snapshot thumbnails from the SSE stream. Plain HTML and inline script,
 * no build step; everything it shows comes from the API, after a login (the page itself is
 * public; the session cookie it gets is HttpOnly, the CSRF token stays in the page's memory).
 */
export const consolePage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Argus control plane</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.3rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
  table { border-collapse: collapse; } td, th { padding: .3rem .7rem; border-bottom: 1px solid #ddd; text-align: left; }
  .online, .ok { color: #16803c; font-weight: 600; } .offline { color: #b42318; font-weight: 600; } .unknown, .stale { color: #888; }
  .degraded { color: #b54708; font-weight: 600; }
  #events { list-style: none; padding: 0; }
  #events li { display: flex; gap: .8rem; align-items: center; padding: .4rem 0; border-bottom: 1px solid #eee; }
  #events img { width: 128px; height: 96px; object-fit: cover; background: #eee; }
  .meta { color: #666; font-size: 12px; } a { color: #1d4ed8; } .error { color: #b42318; }
  form input { margin-right: .4rem; }
</style>
</head>
<body>
<h1>Argus control plane</h1>
<form id="login" hidden>
<input name="name" autocomplete="username" placeholder="name" required>
<input name="password" type="password" autocomplete="current-password" placeholder="password" required>
<button>log in</button> <span id="login-error" class="error"></span>
</form>
<div id="main" hidden>
<p class="meta"><a href="/docs">API (OpenAPI)</a> · <a href="/metrics">metrics</a> · <span id="stream">connecting…</span> · <span id="who"></span> <button id="logout" type="button">log out</button></p>
<h2>Devices</h2>
<table><thead><tr><th>device</th><th>status</th><th>health</th><th>last seen</th><th>cameras (fps in / detect)</th></tr></thead>
<tbody id="devices"><tr><td colspan="5">loading…</td></tr></tbody></table>
<h2>Live events</h2>
<ul id="events"></ul>
</div>
<script>
const text = (tag, value, cls) => { const el = document.createElement(tag); el.textContent = value; if (cls) el.className = cls; return el; };
async function refreshDevices() {
  try {
    const { devices, nextCursor } = await (await fetch('/api/v1/devices?limit=100')).json();
    const rows = devices.map((d) => {
      const tr = document.createElement('tr');
      const fps = (d.telemetry?.cameras ?? []).map((c) => c.id + ': ' + c.fpsIn.toFixed(1) + ' / ' + c.fpsDetect.toFixed(1)).join(', ');
      const figures = d.telemetryStale
        ? text('td', 'stale (last ' + new Date(d.telemetryReceivedAt ?? d.telemetryAt ?? d.lastSeen).toLocaleTimeString() + ')', 'stale')
        : text('td', fps || '–');
      const health = text('td', d.health.status + (d.health.reasons.length ? ': ' + d.health.reasons.join('; ') : ''), d.health.status);
      tr.append(text('td', d.id), text('td', d.status, d.status), health, text('td', new Date(d.lastSeen).toLocaleTimeString()), figures);
      return tr;
    });
    if (nextCursor) rows.push(text('tr', 'the first 100 devices; the API pages through the rest (GET /api/v1/devices?cursor=…)', 'meta'));
    document.getElementById('devices').replaceChildren(...(rows.length ? rows : [text('tr', 'no device has connected yet')]));
  } catch (err) { console.error(err); }
}
function showEvent(s) {
  const e = s.event;
  const li = document.createElement('li');
  if (e.snapshot) {
    const img = document.createElement('img');
    img.alt = 'snapshot ' + e.snapshot.id;
    let tries = 0;
    const src = '/api/v1/devices/' + encodeURIComponent(e.device) + '/snapshots/' + encodeURIComponent(e.snapshot.id);
    img.onerror = () => { if (++tries < 5) setTimeout(() => { img.src = src + '?t=' + tries; }, 1000 * tries); };
    img.src = src;
    li.append(img);
  }
  const body = document.createElement('div');
  body.append(text('div', e.ruleType + ' ' + e.rule + ': ' + e.label + ' #' + e.trackId + ' (' + e.phase + ')'),
    text('div', e.device + ' / ' + e.camera + ' · ' + new Date(e.at).toLocaleTimeString() + ' · score ' + e.score.toFixed(2), 'meta'));
  li.append(body);
  const list = document.getElementById('events');
  list.prepend(li);
  while (list.children.length > 100) list.lastChild.remove();
}
let csrfToken = '';
function follow() {
  const source = new EventSource('/api/v1/events/stream');
  source.addEventListener('open', () => { document.getElementById('stream').textContent = 'live'; });
  source.addEventListener('error', () => { document.getElementById('stream').textContent = 'reconnecting…'; });
  source.addEventListener('event', (m) => showEvent(JSON.parse(m.data)));
  fetch('/api/v1/events?limit=20').then((r) => r.json()).then((page) => page.events.reverse().forEach(showEvent));
  refreshDevices();
  setInterval(refreshDevices, 5000);
}
async function start() {
  const me = await fetch('/api/v1/me');
  if (me.status === 401) { document.getElementById('login').hidden = false; return; }
  const who = await me.json();
  csrfToken = who.csrfToken ?? '';
  document.getElementById('who').textContent = who.name + ' (' + who.role + ')';
  document.getElementById('login').hidden = true;
  document.getElementById('main').hidden = false;
  follow();
}
document.getElementById('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const res = await fetch('/api/v1/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: form.get('name'), password: form.get('password') }),
  });
  if (res.ok) return start();
  const answer = await res.json().catch(() => ({}));
  document.getElementById('login-error').textContent = answer.error ?? 'login failed (' + res.status + ')';
});
document.getElementById('logout').addEventListener('click', async () => {
  await fetch('/api/v1/logout', { method: 'POST', headers: { 'x-csrf-token': csrfToken } });
  location.reload();
});
start();
</script>
</body>
</html>
`;
