/**
 * The operator page at `/`: the first 100 devices (status, last seen, fps per camera, refreshed every 5 s) and a
 * live list of events with snapshot thumbnails from the SSE stream. Plain HTML and inline script,
 * no build step; everything it shows comes from the public API.
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
  .online { color: #16803c; font-weight: 600; } .offline { color: #b42318; font-weight: 600; } .unknown { color: #888; }
  #events { list-style: none; padding: 0; }
  #events li { display: flex; gap: .8rem; align-items: center; padding: .4rem 0; border-bottom: 1px solid #eee; }
  #events img { width: 128px; height: 96px; object-fit: cover; background: #eee; }
  .meta { color: #666; font-size: 12px; } a { color: #1d4ed8; }
</style>
</head>
<body>
<h1>Argus control plane</h1>
<p class="meta"><a href="/docs">API (OpenAPI)</a> · <a href="/metrics">metrics</a> · <span id="stream">connecting…</span></p>
<h2>Devices</h2>
<table><thead><tr><th>device</th><th>status</th><th>last seen</th><th>cameras (fps in / detect)</th></tr></thead>
<tbody id="devices"><tr><td colspan="4">loading…</td></tr></tbody></table>
<h2>Live events</h2>
<ul id="events"></ul>
<script>
const text = (tag, value, cls) => { const el = document.createElement(tag); el.textContent = value; if (cls) el.className = cls; return el; };
async function refreshDevices() {
  try {
    const { devices, nextCursor } = await (await fetch('/api/v1/devices?limit=100')).json();
    const rows = devices.map((d) => {
      const tr = document.createElement('tr');
      const fps = (d.telemetry?.cameras ?? []).map((c) => c.id + ': ' + c.fpsIn.toFixed(1) + ' / ' + c.fpsDetect.toFixed(1)).join(', ');
      tr.append(text('td', d.id), text('td', d.status, d.status), text('td', new Date(d.lastSeen).toLocaleTimeString()), text('td', fps || '–'));
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
    img.onerror = () => { if (++tries < 5) setTimeout(() => { img.src = '/api/v1/snapshots/' + e.snapshot.id + '?t=' + tries; }, 1000 * tries); };
    img.src = '/api/v1/snapshots/' + e.snapshot.id;
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
const source = new EventSource('/api/v1/events/stream');
source.addEventListener('open', () => { document.getElementById('stream').textContent = 'live'; });
source.addEventListener('error', () => { document.getElementById('stream').textContent = 'reconnecting…'; });
source.addEventListener('event', (m) => showEvent(JSON.parse(m.data)));
fetch('/api/v1/events?limit=20').then((r) => r.json()).then((page) => page.events.reverse().forEach(showEvent));
refreshDevices();
setInterval(refreshDevices, 5000);
</script>
</body>
</html>
`;
