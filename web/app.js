// confab web UI — one ES module, no framework.
//
// Everything lives on the server: sessions and messages come from the
// sessions API, replies stream from a generation's resumable event stream
// (GET /api/generations/{id}/events, server-sent events). A reply that is
// streaming when the page reloads is found again through the session's
// `generation_id` and followed from its first event. The open conversation
// is named in the URL (#s=ID) so a reload returns to it.
//
// Safety: text from users and models is only ever put in the page as text
// (textContent) or through markdown-it with raw HTML disabled, whose output
// is parsed inside an inert <template> and filtered against an allow-list
// of elements and attributes before it is shown (see renderMarkdown).

import { renderMarkdown, renderPlain, hasMarkdown } from './md.js';

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') n.className = v;
    else if (k === 'text') n.textContent = v;
    else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids) if (c != null) n.append(c);
  return n;
};

// ------------------------------------------------------------------ state
const S = {
  sessions: [],         // the sidebar's list
  session: null,        // the open session (from GET /api/sessions/{id}), or null: a new chat
  messages: [],         // its messages, all branches
  branch: new Map(),    // parent id -> chosen child id, for alternatives (regenerations)
  models: [],
  templates: [],
  budget: { max: 0, warn: 0.8 },
  gen: null,            // the reply streaming now: {id, es, text, tokens, t0, tFirst, el, ...}
  compare: null,        // a comparison in progress or shown
  query: '',
};
const pref = {
  get(k, d) { try { const v = localStorage.getItem('confab.' + k); return v == null ? d : v; } catch { return d; } },
  set(k, v) { try { localStorage.setItem('confab.' + k, v); } catch { /* private mode */ } },
};

// ------------------------------------------------------------------ API
class ApiError extends Error {
  constructor(message, status, code) { super(message); this.status = status; this.code = code; }
}
function authHeaders() {
  const key = pref.get('key', '');
  return key ? { Authorization: 'Bearer ' + key } : {};
}
async function api(method, path, body, raw = false) {
  const headers = authHeaders();
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError('The server did not answer (' + e.message + ')', 0, 'network');
  }
  if (r.status === 401) askKey();
  if (raw && r.ok) return r;
  const ct = r.headers.get('content-type') || '';
  let data = null;
  if (r.status !== 204) data = ct.includes('json') ? await r.json().catch(() => null) : await r.text();
  if (!r.ok) {
    const msg = (data && data.error && data.error.message) || (typeof data === 'string' && data) || r.statusText;
    throw new ApiError(msg + ' (' + r.status + ')', r.status, data && data.error && data.error.code);
  }
  return data;
}
function eventsUrl(gid, after) {
  const q = new URLSearchParams();
  if (after) q.set('after', String(after));
  const key = pref.get('key', '');
  if (key) q.set('access_token', key);
  const qs = q.toString();
  return '/api/generations/' + encodeURIComponent(gid) + '/events' + (qs ? '?' + qs : '');
}

// Follows a generation's events. H: {delta(text), info(ev), usage(ev),
// done(ev), error(ev)}. EventSource reconnects by itself with Last-Event-ID
// after a network blip; we close it at the end. Returns a handle {close()}.
function follow(gid, h, after = 0) {
  const es = new EventSource(eventsUrl(gid, after));
  let ended = false, lastSeq = after, failures = 0;
  const end = () => { ended = true; es.close(); };
  es.onmessage = (m) => {
    failures = 0;
    let ev;
    try { ev = JSON.parse(m.data); } catch { return; }
    if (typeof ev.seq === 'number') {
      if (ev.seq <= lastSeq) return; // replayed after a reconnect
      lastSeq = ev.seq;
    }
    switch (ev.type) {
      case 'delta': h.delta && h.delta(ev.text || ''); break;
      case 'info': h.info && h.info(ev); break;
      case 'usage': h.usage && h.usage(ev); break;
      case 'done': end(); h.done && h.done(ev); break;
      case 'error': end(); h.error && h.error(ev); break;
    }
  };
  es.onerror = async () => {
    if (ended) return;
    // CLOSED: the server refused (204 after the end, 404 for an expired
    // generation): ask where it stands and end the reply either way.
    if (es.readyState === EventSource.CLOSED || ++failures > 5) {
      end();
      let st = null;
      try { st = await api('GET', '/api/generations/' + encodeURIComponent(gid)); } catch { /* gone */ }
      if (st && st.state === 'running') return h.error && h.error({ kind: 'disconnected', message: 'lost the event stream' });
      h.done && h.done({ finish_reason: st ? st.state : 'unknown', lost: true });
    }
  };
  return { close: end };
}

// ------------------------------------------------------------------ UI helpers
let toastTimer = 0;
function toast(msg, isError = false) {
  const t = $('toast');
  t.textContent = msg;
  t.classList.toggle('error', isError);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 6000 : 3000);
}
const fail = (e) => { console.error(e); toast(e && e.message ? e.message : String(e), true); };
const fmtInt = (n) => Number(n || 0).toLocaleString('en-US');
function fmtCost(c) {
  if (c == null || !(c >= 0)) return '';
  return c === 0 ? '$0' : c < 0.01 ? '$' + c.toFixed(5) : '$' + c.toFixed(3);
}
function fmtDate(ms) {
  if (!ms) return '';
  const d = new Date(ms), now = new Date();
  return d.toDateString() === now.toDateString()
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}
const estTokens = (s) => Math.ceil((s || '').length / 4);
function debounce(fn, ms) {
  let t = 0;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

// Snippets from search mark matches with [ and ]: shown as <mark>, built as
// text nodes only.
function highlighted(snippet) {
  const frag = document.createDocumentFragment();
  const re = /\[([^\[\]]*)\]/g;
  let last = 0, m;
  while ((m = re.exec(snippet))) {
    if (m.index > last) frag.append(snippet.slice(last, m.index));
    frag.append(el('mark', { text: m[1] }));
    last = m.index + m[0].length;
  }
  if (last < snippet.length) frag.append(snippet.slice(last));
  return frag;
}

// ------------------------------------------------------------------ theme
function initTheme() {
  $('theme-toggle').addEventListener('click', () => {
    const cur = document.documentElement.dataset.theme ||
      (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
    const next = cur === 'dark' ? 'light' : 'dark';
    document.documentElement.dataset.theme = next;
    pref.set('theme', next);
  });
}

// ------------------------------------------------------------------ sidebar
function setSidebar(open) {
  $('sidebar').classList.toggle('open', open);
  $('sidebar-toggle').setAttribute('aria-expanded', String(open));
  if (open) {
    document.documentElement.style.setProperty('--topbar-h', document.querySelector('.topbar').offsetHeight + 'px');
    $('search').focus();
  }
}
const PAGE = 50;
async function loadSessions(more = false) {
  const offset = more ? S.sessions.length : 0;
  const limit = more ? PAGE : Math.max(PAGE, S.sessions.length);
  const d = await api('GET', '/api/sessions?' + new URLSearchParams({ limit: String(limit), offset: String(offset), archived: '0' }));
  const got = (d && d.sessions) || [];
  S.sessions = more ? S.sessions.concat(got) : got;
  S.moreSessions = got.length === limit;
  if (!S.query) renderSessions();
}
function renderSessions() {
  const ul = $('sessions');
  $('list-label').textContent = 'Recent';
  ul.replaceChildren();
  if (!S.sessions.length) ul.append(el('li', { class: 'empty-list', text: 'No conversations yet.' }));
  for (const s of S.sessions) {
    const cur = S.session && S.session.id === s.id;
    ul.append(el('li', {}, el('button', {
      type: 'button', 'aria-current': cur ? 'true' : 'false', 'data-id': s.id,
      onclick: () => openSession(s.id),
    }, el('span', { class: 's-title', text: s.title || 'Untitled' }),
    el('span', { class: 's-meta', text: fmtDate(s.updated_at) + ' · ' + fmtInt(s.message_count) + ' msg' + (s.model ? ' · ' + s.model : '') }))));
  }
  if (S.moreSessions) {
    ul.append(el('li', {}, el('button', { type: 'button', class: 'more', onclick: () => loadSessions(true).catch(fail) }, 'Show older')));
  }
}
async function search(q) {
  S.query = q.trim();
  if (!S.query) return renderSessions();
  let d;
  try { d = await api('GET', '/api/search?' + new URLSearchParams({ q: S.query, limit: '20' })); } catch (e) { return fail(e); }
  if (q.trim() !== S.query) return; // a newer query is on its way
  const ul = $('sessions');
  $('list-label').textContent = 'Search results';
  ul.replaceChildren();
  const hits = (d && d.hits) || [];
  if (!hits.length) ul.append(el('li', { class: 'empty-list', text: 'Nothing found.' }));
  for (const h of hits) {
    ul.append(el('li', {}, el('button', {
      type: 'button', class: 'hit', 'data-session': h.session_id,
      onclick: () => openSession(h.session_id, h.message_id),
    }, el('span', { class: 's-title', text: h.title || 'Untitled' }),
    el('span', { class: 's-snippet' }, highlighted(h.snippet || '')),
    el('span', { class: 's-meta', text: fmtDate(h.created_at) }))));
  }
}

// ------------------------------------------------------------------ sessions
const hashFor = (id) => '#s=' + encodeURIComponent(id);
function hashSession() {
  const m = /^#s=([^&]+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}
async function openSession(id, focusMessage) {
  if (S.gen) stopFollowing();
  closeCompare();
  setSidebar(false);
  let d;
  try { d = await api('GET', '/api/sessions/' + encodeURIComponent(id)); } catch (e) {
    if (e.status === 404) { history.replaceState(null, '', '#'); newChat(); }
    return fail(e);
  }
  S.session = d;
  S.messages = d.messages || [];
  S.branch.clear();
  S.last = null;
  if (location.hash !== hashFor(d.id)) history.replaceState(null, '', hashFor(d.id));
  applySessionFields();
  renderMessages();
  renderSessions();
  if (d.generation_id) resumeGeneration(d.generation_id);
  if (focusMessage != null) {
    const m = document.querySelector('.msg[data-id="' + CSS.escape(String(focusMessage)) + '"]');
    if (m) { m.scrollIntoView({ block: 'center' }); m.classList.add('flash'); setTimeout(() => m.classList.remove('flash'), 2000); }
  }
}
function newChat() {
  if (S.gen) stopFollowing();
  closeCompare();
  S.session = null; S.messages = []; S.branch.clear(); S.last = null;
  history.replaceState(null, '', location.pathname);
  applySessionFields();
  renderMessages();
  renderSessions();
  setSidebar(false);
  $('input').focus();
}
function applySessionFields() {
  const s = S.session;
  document.title = s && s.title ? s.title + ' — confab' : 'confab';
  $('conv-title').textContent = s ? (s.title || 'Untitled') : 'New chat';
  for (const id of ['rename', 'export-json', 'export-md', 'delete']) $(id).disabled = !s;
  $('system-prompt').value = s ? (s.system_prompt || '') : pref.get('system', '');
  if (s && s.model && S.models.some((m) => m.id === s.model)) $('model').value = s.model;
}
async function ensureSession() {
  if (S.session) return S.session;
  const body = {};
  if ($('model').value) body.model = $('model').value;
  if ($('system-prompt').value.trim()) body.system_prompt = $('system-prompt').value;
  const s = await api('POST', '/api/sessions', body);
  S.session = { ...s, messages: [] };
  S.messages = [];
  history.replaceState(null, '', hashFor(s.id));
  applySessionFields();
  return S.session;
}
async function refreshSession() {
  if (!S.session) return;
  const d = await api('GET', '/api/sessions/' + encodeURIComponent(S.session.id));
  S.session = d; S.messages = d.messages || [];
  applySessionFields();
}
function startRename() {
  if (!S.session) return;
  $('rename-input').value = S.session.title || '';
  $('rename-form').hidden = false; $('conv-title').hidden = true; $('conv-actions').hidden = true;
  $('rename-input').focus(); $('rename-input').select();
}
function endRename() { $('rename-form').hidden = true; $('conv-title').hidden = false; $('conv-actions').hidden = false; }
async function saveRename(ev) {
  ev.preventDefault();
  const title = $('rename-input').value.trim();
  try {
    await api('PATCH', '/api/sessions/' + S.session.id, { title });
    S.session.title = title; applySessionFields(); endRename(); loadSessions().catch(fail);
  } catch (e) { fail(e); }
}
async function deleteSession() {
  if (!S.session) return;
  if (!confirm('Delete “' + (S.session.title || 'Untitled') + '” and all its messages?')) return;
  try {
    await api('DELETE', '/api/sessions/' + S.session.id);
    toast('Conversation deleted');
    newChat(); loadSessions().catch(fail);
  } catch (e) { fail(e); }
}
async function exportSession(format) {
  if (!S.session) return;
  try {
    const r = await api('GET', '/api/sessions/' + S.session.id + '/export?format=' + format, undefined, true);
    const blob = await r.blob();
    const cd = r.headers.get('content-disposition') || '';
    const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
    const name = m ? decodeURIComponent(m[1]) : 'confab-session-' + S.session.id + (format === 'json' ? '.json' : '.md');
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { fail(e); }
}
async function importFile(ev) {
  const f = ev.target.files && ev.target.files[0];
  ev.target.value = '';
  if (!f) return;
  try {
    const text = await f.text();
    const d = await api('POST', '/api/import', text);
    toast('Imported ' + fmtInt(d.sessions_imported) + ' conversation(s), ' + fmtInt(d.messages_imported) + ' message(s)');
    await loadSessions();
  } catch (e) { fail(e); }
}

// ------------------------------------------------------------------ messages
// The branch shown: from the root, at each step the chosen alternative
// (default: the newest), so a regenerated reply replaces the old one on
// screen while the old one stays reachable with ‹ ›.
function thread() {
  const ms = S.messages;
  if (!ms.length) return [];
  if (!ms.some((m) => m.parent_id)) return ms.slice().sort((a, b) => a.id - b.id);
  const kids = new Map();
  for (const m of ms) {
    const p = m.parent_id || 0;
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push(m);
  }
  for (const l of kids.values()) l.sort((a, b) => a.id - b.id);
  const out = [];
  let p = 0;
  for (let guard = 0; guard < ms.length && kids.has(p); guard++) {
    const l = kids.get(p);
    const want = S.branch.get(p);
    const m = l.find((x) => x.id === want) || l[l.length - 1];
    out.push({ m, alts: l });
    p = m.id;
  }
  return out.map(({ m, alts }) => Object.assign(m, { _alts: alts }));
}
function renderMessages() {
  const box = $('messages');
  box.replaceChildren();
  const t = thread();
  if (!t.length) {
    box.append(el('div', { class: 'empty' },
      el('p', { text: 'Start a conversation.' }),
      el('p', { text: 'Replies stream in as they are written; everything is kept on this server.' })));
  }
  const lastAssistant = [...t].reverse().find((m) => m.role === 'assistant');
  for (const m of t) {
    if (m.role === 'system') continue;
    box.append(messageEl(m, m === lastAssistant));
  }
  box.scrollTop = box.scrollHeight;
  updateStatus();
}
function answeredBadges(m, head) {
  if (m.role !== 'assistant') return;
  if (m.model) {
    head.append(el('span', { class: 'badge model', title: 'The model that answered', text: m.model + (m.provider ? ' · ' + m.provider : '') }));
    const fb = pref.get('fallback.' + m.id, '');
    if (fb) head.append(el('span', { class: 'badge fallback', title: fb, text: 'fallback' }));
  }
  if (m.cached) head.append(el('span', { class: 'badge cached', text: 'cached' }));
  if (m.status === 'cancelled') head.append(el('span', { class: 'badge warn', text: 'stopped' }));
  if (m.status === 'error') head.append(el('span', { class: 'badge error', text: 'failed' }));
  const bits = [];
  if (m.completion_tokens) bits.push(fmtInt(m.completion_tokens) + ' tok');
  if (m.completion_tokens && m.latency_ms) bits.push((m.completion_tokens / (m.latency_ms / 1000)).toFixed(1) + ' tok/s');
  if (m.cost > 0) bits.push(fmtCost(m.cost));
  if (bits.length) head.append(el('span', { class: 'stats', text: bits.join(' · ') }));
}
function messageEl(m, isLastAssistant) {
  const head = el('div', { class: 'msg-head' }, el('span', { class: 'role', text: m.role === 'user' ? 'You' : 'Assistant' }));
  answeredBadges(m, head);
  if (m._alts && m._alts.length > 1) {
    const i = m._alts.indexOf(m);
    const go = (d) => () => { S.branch.set(m.parent_id || 0, m._alts[(i + d + m._alts.length) % m._alts.length].id); renderMessages(); };
    head.append(el('span', { class: 'alts' },
      el('button', { type: 'button', 'aria-label': 'Previous alternative', onclick: go(-1) }, '‹'),
      el('span', { text: (i + 1) + '/' + m._alts.length }),
      el('button', { type: 'button', 'aria-label': 'Next alternative', onclick: go(1) }, '›')));
  }
  const body = el('div', { class: 'body' + (m.role === 'assistant' ? ' md' : ' plain') });
  if (m.role === 'assistant') renderMarkdown(body, m.content || ''); else renderPlain(body, m.content || '');
  const node = el('article', { class: 'msg ' + m.role, 'data-id': m.id, 'aria-label': m.role === 'user' ? 'Your message' : 'Reply' }, head, body);
  if (m.error) node.append(el('p', { class: 'err', text: m.error }));
  const actions = el('div', { class: 'msg-actions' });
  if (m.role === 'user') actions.append(el('button', { type: 'button', onclick: () => editMessage(node, m) }, 'Edit'));
  if (m.role === 'assistant') {
    actions.append(el('button', { type: 'button', onclick: () => copyText(m.content || '') }, 'Copy'));
    if (isLastAssistant) actions.append(el('button', { type: 'button', class: 'regen', onclick: regenerate }, 'Regenerate'));
  }
  node.append(actions);
  return node;
}
function editMessage(node, m) {
  if (node.querySelector('.edit-box')) return;
  const body = node.querySelector('.body');
  const ta = el('textarea', { rows: 3, 'aria-label': 'Edit message' });
  ta.value = m.content || '';
  const box = el('div', { class: 'edit-box' }, ta, el('div', { class: 'msg-actions' },
    el('button', { type: 'button', class: 'primary', onclick: () => { const v = ta.value.trim(); if (v) { box.remove(); body.hidden = false; send(v); } } }, 'Resend'),
    el('button', { type: 'button', onclick: () => { box.remove(); body.hidden = false; } }, 'Cancel')));
  body.hidden = true;
  body.after(box);
  ta.focus();
}
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = el('textarea', { style: 'position:fixed;left:-9999px' });
    ta.value = text; document.body.append(ta); ta.select();
    try { document.execCommand('copy'); } catch { /* nothing more to try */ }
    ta.remove();
  }
  toast('Copied');
}
document.addEventListener('confab:copy', (e) => copyText(e.detail));
function infoLine(text) {
  const n = el('p', { class: 'info', role: 'note', text });
  $('messages').append(n);
  return n;
}

// ------------------------------------------------------------------ sending and streaming
function params() {
  const p = { temperature: Number($('temperature').value), top_p: Number($('top-p').value),
    granularity: document.querySelector('input[name="granularity"]:checked').value };
  const mt = parseInt($('max-tokens').value, 10);
  if (mt > 0) p.max_tokens = mt;
  return p;
}
function setBusy(busy) {
  $('send').hidden = busy; $('stop').hidden = !busy;
  $('live-note').textContent = busy ? 'Streaming — sliders and granularity apply to this reply' : '';
  for (const b of document.querySelectorAll('.regen')) b.disabled = busy;
}
async function send(content) {
  if (S.gen) return;
  if (S.compare && S.compare.running) return;
  if ($('compare-toggle').getAttribute('aria-pressed') === 'true') return sendCompare(content);
  try {
    await ensureSession();
    const body = { content, ...params() };
    if ($('model').value) body.model = $('model').value;
    // Show the message at once; the server's copy replaces it when the reply ends.
    const optimistic = { id: -Date.now(), role: 'user', content, parent_id: null };
    const ui = startReplyUI(optimistic);
    const r = await api('POST', '/api/sessions/' + S.session.id + '/messages', body);
    beginGeneration(r.generation_id, ui, 0);
  } catch (e) { setBusy(false); S.gen = null; fail(e); renderMessages(); }
}
async function regenerate() {
  if (S.gen || !S.session) return;
  try {
    const body = { regenerate: true, ...params() };
    if ($('model').value) body.model = $('model').value;
    const ui = startReplyUI(null, true);
    const r = await api('POST', '/api/sessions/' + S.session.id + '/messages', body);
    beginGeneration(r.generation_id, ui, 0);
  } catch (e) { setBusy(false); S.gen = null; fail(e); renderMessages(); }
}
// Puts the user's message (when new) and an empty reply on screen.
function startReplyUI(userMsg, replacing = false) {
  const box = $('messages');
  if (box.querySelector('.empty')) box.replaceChildren();
  if (userMsg) box.append(messageEl(userMsg, false));
  if (replacing) {
    const t = thread();
    const last = t[t.length - 1];
    if (last && last.role === 'assistant') box.querySelector('.msg[data-id="' + last.id + '"]')?.remove();
  }
  const m = { id: 'live', role: 'assistant', content: '' };
  const node = messageEl(m, false);
  node.classList.add('live');
  node.querySelector('.msg-actions').replaceChildren();
  const body = node.querySelector('.body');
  body.classList.add('streaming');
  body.setAttribute('aria-busy', 'true');
  box.append(node);
  box.scrollTop = box.scrollHeight;
  S.gen = { userText: userMsg ? userMsg.content : '', infos: [], id: null, es: null, text: '', tokens: 0, usage: null, t0: performance.now(), tFirst: 0, node, body, head: node.querySelector('.msg-head'), pending: false };
  setBusy(true);
  updateStatus();
  return S.gen;
}
function beginGeneration(gid, g, after) {
  g.id = gid;
  const box = $('messages');
  const paint = () => {
    g.pending = false;
    const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    renderMarkdown(g.body, g.text);
    if (stick) box.scrollTop = box.scrollHeight;
    updateStatus();
  };
  g.es = follow(gid, {
    delta(text) {
      if (!g.tFirst) g.tFirst = performance.now();
      g.text += text; g.tokens++;
      if (!g.pending) { g.pending = true; requestAnimationFrame(paint); }
    },
    info(ev) {
      const n = infoLine(ev.message || ev.kind);
      g.node.before(n);
      g.infos.push(ev.message || ev.kind);
      if (ev.kind === 'fallback') g.fallback = ev.message;
    },
    usage(ev) { g.usage = ev; updateStatus(); },
    done(ev) { finishGeneration(g, ev, null); },
    error(ev) { finishGeneration(g, null, ev); },
  }, after);
}
async function finishGeneration(g, done, error) {
  if (S.gen !== g) return;
  g.done = done; g.error = error; g.tEnd = performance.now();
  renderMarkdown(g.body, g.text);
  g.body.classList.remove('streaming');
  g.body.removeAttribute('aria-busy');
  if (error) toast((error.kind ? error.kind + ': ' : '') + (error.message || 'the reply failed'), true);
  // Which model was asked is not stored with a message: remember fallbacks
  // seen live so the badge survives a reload in this browser.
  if (g.fallback && done && done.message_id) pref.set('fallback.' + done.message_id, g.fallback);
  // Swap the live reply for the stored one before the composer frees up, so
  // the figures never count the reply twice or not at all.
  let fresh = null;
  if (S.session) {
    try { fresh = await api('GET', '/api/sessions/' + encodeURIComponent(S.session.id)); } catch (e) { fail(e); }
  }
  if (S.gen !== g) return; // the reader moved to another conversation meanwhile
  S.gen = null;
  S.last = g; // the status bar keeps the last reply's figures
  if (fresh) {
    S.session = fresh; S.messages = fresh.messages || []; applySessionFields(); renderMessages();
    // Keep what the server said about this reply (budget, trimming, fallback) above it.
    const replies = $('messages').querySelectorAll('.msg.assistant');
    const last = replies[replies.length - 1];
    if (last) for (const t of g.infos) last.before(infoLine(t));
  }
  setBusy(false);
  updateStatus();
  loadSessions().catch(() => {});
}
function stopFollowing() {
  const g = S.gen;
  if (!g) return;
  if (g.es) g.es.close();
  S.gen = null;
  setBusy(false);
}
async function stop() {
  const ids = [];
  if (S.gen && S.gen.id) ids.push(S.gen.id);
  if (S.compare && S.compare.running) for (const c of S.compare.cols) if (!c.finished && c.gid) ids.push(c.gid);
  for (const id of ids) {
    try { await api('POST', '/api/generations/' + encodeURIComponent(id) + '/cancel', {}); } catch (e) { if (e.status !== 409) fail(e); }
  }
}
// A reply that was streaming when the page loaded: follow it from its first
// event (the text so far is replayed), in place of the stored partial row.
function resumeGeneration(gid) {
  const t = thread();
  const last = t[t.length - 1];
  const box = $('messages');
  if (last && last.role === 'assistant' && last.status === 'streaming') box.querySelector('.msg[data-id="' + last.id + '"]')?.remove();
  const g = startReplyUI(null);
  beginGeneration(gid, g, 0);
}
// Live parameters: applied from the next token of the running reply.
const pushParams = debounce(async (which) => {
  const ids = [];
  if (S.gen && S.gen.id) ids.push(S.gen.id);
  if (S.compare && S.compare.running) for (const c of S.compare.cols) if (!c.finished && c.gid) ids.push(c.gid);
  if (!ids.length) return;
  const p = params();
  const body = which === 'granularity' ? { granularity: p.granularity } : { temperature: p.temperature, top_p: p.top_p };
  for (const id of ids) {
    try {
      await api('POST', '/api/generations/' + encodeURIComponent(id) + '/params', body);
      $('live-note').textContent = 'Applied to the streaming reply: ' + Object.entries(body).map(([k, v]) => k + ' ' + v).join(', ');
    } catch (e) { if (e.status !== 409) fail(e); }
  }
}, 120);

// ------------------------------------------------------------------ compare
async function sendCompare(content) {
  const a = $('model').value, b = $('model-b').value;
  if (!a || !b) return toast('Pick two models to compare', true);
  try {
    await ensureSession();
    const d = await api('POST', '/api/compare', { session_id: S.session.id, content, models: [a, b] });
    const box = $('messages');
    if (box.querySelector('.empty')) box.replaceChildren();
    box.append(messageEl({ id: -1, role: 'user', content }, false));
    openCompare(d, [a, b]);
  } catch (e) { fail(e); }
}
function openCompare(d, models) {
  const cols = ['a', 'b'].map((k, i) => {
    const root = $('compare-' + k);
    const c = { k, model: models[i], gid: d.generations[i], messageId: d.message_ids ? d.message_ids[i] : null, // else from `done`
      text: '', tokens: 0, finished: false, root, body: root.querySelector('.body'), meta: root.querySelector('.meta'), t0: performance.now() };
    root.querySelector('.compare-h').textContent = k.toUpperCase() + ': ' + c.model;
    c.body.replaceChildren(); c.meta.textContent = '';
    c.body.classList.add('streaming');
    return c;
  });
  S.compare = { cols, running: true, models };
  S.last = null;
  $('compare').hidden = false; $('vote').hidden = true;
  setBusy(true);
  for (const c of cols) {
    let pending = false;
    c.es = follow(c.gid, {
      delta(t) { c.text += t; c.tokens++; if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; renderMarkdown(c.body, c.text); }); } },
      info(ev) { if (ev.kind === 'fallback') c.info = ev.message; },
      usage(ev) { c.usage = ev; },
      done(ev) {
        c.done = ev;
        if (ev.message_id) c.messageId = ev.message_id;
        if (c.info && ev.message_id) pref.set('fallback.' + ev.message_id, c.info);
        endCol(c);
      },
      error(ev) { c.error = ev; endCol(c); },
    });
  }
}
function endCol(c) {
  c.finished = true;
  renderMarkdown(c.body, c.text);
  c.body.classList.remove('streaming');
  const secs = (performance.now() - c.t0) / 1000;
  const n = c.usage ? c.usage.completion_tokens : c.tokens;
  const bits = [];
  if (c.done && c.done.model) bits.push('answered by ' + c.done.model + (c.done.provider ? ' · ' + c.done.provider : ''));
  if (c.info) bits.push('fallback: ' + c.info);
  bits.push(fmtInt(n) + ' tokens, ' + (n / Math.max(secs, 0.001)).toFixed(1) + ' tok/s');
  if (c.usage && c.usage.cost >= 0) bits.push(fmtCost(c.usage.cost));
  if (c.done && c.done.cached) bits.push('cached');
  if (c.error) bits.push('error: ' + (c.error.message || c.error.kind));
  c.meta.textContent = bits.join(' · ');
  if (S.compare && S.compare.cols.every((x) => x.finished)) {
    S.compare.running = false;
    setBusy(false);
    $('vote').hidden = false;
    for (const btn of $('vote').querySelectorAll('[data-winner]')) btn.disabled = false;
    refreshSession().then(() => loadSessions()).catch(() => {});
  }
}
async function vote(winner) {
  const cmp = S.compare;
  if (!cmp || !S.session) return;
  let [ma, mb] = cmp.cols.map((c) => c.messageId);
  if (!ma || !mb) {
    // Not given by /api/compare: the two newest replies of the session.
    const replies = S.messages.filter((m) => m.role === 'assistant').sort((x, y) => y.id - x.id);
    [mb, ma] = [replies[0] && replies[0].id, replies[1] && replies[1].id];
  }
  try {
    await api('POST', '/api/votes', { session_id: S.session.id, message_a: ma, message_b: mb,
      model_a: cmp.models[0], model_b: cmp.models[1], winner });
    for (const btn of $('vote').querySelectorAll('[data-winner]')) btn.disabled = true;
    toast('Vote recorded: ' + (winner === 'tie' ? 'tie' : winner.toUpperCase() + ' is better'));
  } catch (e) { fail(e); }
}
function closeCompare() {
  if (S.compare) for (const c of S.compare.cols) c.es && c.es.close();
  const wasShown = !!S.compare;
  S.compare = null;
  $('compare').hidden = true;
  if (wasShown && !S.gen) setBusy(false);
}
function setCompareMode(on) {
  $('compare-toggle').setAttribute('aria-pressed', String(on));
  $('model-b-wrap').hidden = !on;
  if (on && $('model-b').value === $('model').value && $('model-b').options.length > 1) {
    $('model-b').selectedIndex = ($('model').selectedIndex + 1) % $('model-b').options.length;
  }
}

// ------------------------------------------------------------------ templates
async function loadTemplates() {
  const d = await api('GET', '/api/templates');
  S.templates = (d && d.templates) || [];
  const sel = $('template');
  sel.replaceChildren(el('option', { value: '' }, 'Template…'));
  for (const t of S.templates) sel.append(el('option', { value: t.name }, t.name));
  sel.hidden = !S.templates.length;
}
function showTemplateForm() {
  const name = $('template').value;
  const form = $('template-form');
  form.replaceChildren();
  const t = S.templates.find((x) => x.name === name);
  if (!t) { form.hidden = true; return; }
  const fields = (t.placeholders || []).map((p) => {
    const ta = el('textarea', { rows: 2, name: p, 'data-placeholder': p, required: true });
    return el('label', {}, el('span', { text: p }), ta);
  });
  form.append(el('p', { class: 'hint', text: t.text }), ...fields, el('div', { class: 'row' },
    el('button', { type: 'button', class: 'primary', id: 'template-fill', onclick: fillTemplate }, 'Fill message'),
    el('button', { type: 'button', onclick: () => { $('template').value = ''; showTemplateForm(); } }, 'Cancel')));
  form.hidden = false;
  const first = form.querySelector('textarea');
  (first || $('template-fill')).focus();
}
async function fillTemplate() {
  const name = $('template').value;
  const values = {};
  for (const ta of $('template-form').querySelectorAll('textarea')) values[ta.dataset.placeholder] = ta.value;
  try {
    const d = await api('POST', '/api/templates/' + encodeURIComponent(name) + '/render', { values });
    $('input').value = d.text;
    $('template').value = '';
    showTemplateForm();
    autoGrow();
    $('input').focus();
  } catch (e) { fail(e); }
}

// ------------------------------------------------------------------ status bar
// What the server's budget counts (src/app/budget.c): every message of the
// branch as the model sees it, plus 4 per message, plus the system prompt.
// Replies use their stored token count; other text is estimated (~4 bytes a
// token) since the API does not report per-message prompt tokens.
function conversationTokens() {
  let n = 0;
  const sys = S.session ? S.session.system_prompt : $('system-prompt').value;
  if (sys) n += estTokens(sys) + 4;
  for (const m of thread()) n += (m.role === 'assistant' && m.completion_tokens ? m.completion_tokens : estTokens(m.content)) + 4;
  if (S.gen) n += (S.gen.usage ? S.gen.usage.completion_tokens : S.gen.tokens) + 4 + (S.gen.userText ? estTokens(S.gen.userText) + 4 : 0);
  return n;
}
function updateStatus() {
  const n = conversationTokens();
  const { max, warn } = S.budget;
  const conv = $('st-conv'), meter = $('st-meter');
  if (max > 0) {
    const ratio = n / max;
    conv.textContent = 'Conversation ' + fmtInt(n) + ' / ' + fmtInt(max) + ' tokens' + (ratio >= warn ? ' — ' + Math.round(ratio * 100) + '% of the budget' : '');
    conv.classList.toggle('warn', ratio >= warn);
    meter.hidden = false; meter.value = Math.min(ratio, 1); meter.low = warn;
  } else {
    conv.textContent = 'Conversation ' + fmtInt(n) + ' tokens';
    conv.classList.remove('warn');
    meter.hidden = true;
  }
  const g = S.gen || S.last;
  const reply = $('st-reply'), cost = $('st-cost'), cached = $('st-cached'), model = $('st-model');
  if (g) {
    const tokens = g.usage ? g.usage.completion_tokens : g.tokens;
    const end = g.tEnd || performance.now();
    const secs = g.tFirst ? (end - g.tFirst) / 1000 : 0;
    reply.textContent = 'Reply ' + fmtInt(tokens) + ' tokens' + (secs > 0.005 && tokens > 1 ? ' · ' + (tokens / secs).toFixed(1) + ' tok/s' : '') + (g.usage && g.usage.estimated ? ' (estimated)' : '');
    cost.textContent = g.usage && g.usage.cost >= 0 ? 'Cost ' + fmtCost(g.usage.cost) : '';
    cached.hidden = !(g.done && g.done.cached);
    model.textContent = g.done && g.done.model ? 'Answered by ' + g.done.model + (g.done.provider ? ' (' + g.done.provider + ')' : '') + (g.fallback ? ' — fallback' : '') : (S.gen ? 'Streaming…' : '');
    model.classList.toggle('warn', !!g.fallback);
  } else {
    // The last stored reply of the branch shown.
    const t = thread();
    const m = [...t].reverse().find((x) => x.role === 'assistant');
    if (m && m.status !== 'streaming') {
      const k = m.completion_tokens || 0;
      reply.textContent = k ? 'Reply ' + fmtInt(k) + ' tokens' + (m.latency_ms ? ' · ' + (k / (m.latency_ms / 1000)).toFixed(1) + ' tok/s' : '') : '';
      cost.textContent = m.cost > 0 ? 'Cost ' + fmtCost(m.cost) : '';
      cached.hidden = !m.cached;
      model.textContent = m.model ? 'Answered by ' + m.model + (m.provider ? ' (' + m.provider + ')' : '') : '';
      model.classList.toggle('warn', !!pref.get('fallback.' + m.id, ''));
    } else {
      reply.textContent = ''; cost.textContent = ''; cached.hidden = true; model.textContent = '';
    }
  }
  const total = S.messages.reduce((a, m) => a + (m.cost > 0 ? m.cost : 0), 0);
  if (total > 0 && !cost.textContent) cost.textContent = 'Conversation cost ' + fmtCost(total);
}

// ------------------------------------------------------------------ API key
function askKey() {
  const d = $('key-dialog');
  if (d.open) return;
  $('key-input').value = '';
  d.showModal();
}

// ------------------------------------------------------------------ composer
function autoGrow() {
  const ta = $('input');
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight + 2, window.innerHeight * 0.4) + 'px';
}
function submit(ev) {
  if (ev) ev.preventDefault();
  const text = $('input').value;
  if (!text.trim() || S.gen || (S.compare && S.compare.running)) return;
  $('input').value = '';
  autoGrow();
  send(text);
}

// ------------------------------------------------------------------ start
async function loadModels() {
  const d = await api('GET', '/v1/models');
  S.models = (d && d.data) || [];
  for (const id of ['model', 'model-b']) {
    const sel = $(id);
    sel.replaceChildren();
    for (const m of S.models) {
      // available: false when its API key is not set on the server.
      const off = m.available === false;
      sel.append(el('option', { value: m.id, disabled: off }, m.id + (m.owned_by ? ' (' + m.owned_by + ')' : '') + (off ? ' — no API key' : '')));
    }
  }
  // The model last picked here, else the server's default.
  const saved = pref.get('model', '');
  if (S.models.some((m) => m.id === saved)) $('model').value = saved;
  else if (d && d.default && S.models.some((m) => m.id === d.default)) $('model').value = d.default;
  $('compare-toggle').disabled = S.models.length < 2;
}
async function loadBudget() {
  const d = await api('GET', '/api/stats');
  const b = (d && d.budget) || {};
  S.budget = { max: Number(b.max_tokens_per_conversation) || 0, warn: Number(b.warn_ratio) || 0.8 };
  updateStatus();
}
function bind() {
  $('composer').addEventListener('submit', submit);
  $('input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) submit(e);
  });
  $('input').addEventListener('input', autoGrow);
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    if (S.gen || (S.compare && S.compare.running)) { e.preventDefault(); stop(); } else if ($('sidebar').classList.contains('open')) setSidebar(false);
  });
  $('stop').addEventListener('click', stop);
  $('new-session').addEventListener('click', newChat);
  $('sidebar-toggle').addEventListener('click', () => setSidebar(!$('sidebar').classList.contains('open')));
  $('main').addEventListener('pointerdown', () => { if ($('sidebar').classList.contains('open')) setSidebar(false); });
  $('search').addEventListener('input', debounce((e) => search(e.target.value), 200));
  $('search-form').addEventListener('submit', (e) => { e.preventDefault(); search($('search').value); });
  $('rename').addEventListener('click', startRename);
  $('rename-form').addEventListener('submit', saveRename);
  $('rename-cancel').addEventListener('click', endRename);
  $('delete').addEventListener('click', deleteSession);
  $('export-json').addEventListener('click', () => exportSession('json'));
  $('export-md').addEventListener('click', () => exportSession('markdown'));
  $('import-file').addEventListener('change', importFile);
  $('settings-toggle').addEventListener('click', () => {
    const open = $('settings').hidden;
    $('settings').hidden = !open;
    $('settings-toggle').setAttribute('aria-expanded', String(open));
  });
  for (const [id, out, digits] of [['temperature', 'temperature-val', 2], ['top-p', 'top-p-val', 2]]) {
    const r = $(id);
    r.value = pref.get(id, r.value);
    $(out).textContent = Number(r.value).toFixed(digits);
    r.addEventListener('input', () => { $(out).textContent = Number(r.value).toFixed(digits); pref.set(id, r.value); pushParams('sampling'); });
  }
  const gran = pref.get('granularity', 'token');
  for (const r of document.querySelectorAll('input[name="granularity"]')) {
    r.checked = r.value === gran;
    r.addEventListener('change', () => { pref.set('granularity', r.value); pushParams('granularity'); });
  }
  $('max-tokens').value = pref.get('max_tokens', '');
  $('max-tokens').addEventListener('change', () => pref.set('max_tokens', $('max-tokens').value));
  $('system-prompt').addEventListener('change', async () => {
    const v = $('system-prompt').value;
    if (!S.session) { pref.set('system', v); updateStatus(); return; }
    try { await api('PATCH', '/api/sessions/' + S.session.id, { system_prompt: v }); S.session.system_prompt = v; updateStatus(); toast('System prompt saved for this conversation'); } catch (e) { fail(e); }
  });
  $('model').addEventListener('change', async () => {
    pref.set('model', $('model').value);
    if (S.session) {
      try { await api('PATCH', '/api/sessions/' + S.session.id, { model: $('model').value }); S.session.model = $('model').value; } catch (e) { fail(e); }
    }
  });
  $('compare-toggle').addEventListener('click', () => setCompareMode($('compare-toggle').getAttribute('aria-pressed') !== 'true'));
  for (const b of $('vote').querySelectorAll('[data-winner]')) b.addEventListener('click', () => vote(b.dataset.winner));
  $('compare-close').addEventListener('click', () => { closeCompare(); renderMessages(); });
  $('template').addEventListener('change', showTemplateForm);
  $('key-form').addEventListener('submit', () => { pref.set('key', $('key-input').value.trim()); setTimeout(start, 0); });
  window.addEventListener('hashchange', () => {
    const id = hashSession();
    if (id && (!S.session || String(S.session.id) !== id)) openSession(id);
  });
}
async function start() {
  const jobs = [loadModels(), loadSessions(), loadTemplates().catch(() => { $('template').hidden = true; }), loadBudget().catch(() => {})];
  const res = await Promise.allSettled(jobs);
  const bad = res.find((r) => r.status === 'rejected');
  if (bad) fail(bad.reason);
  const id = hashSession();
  if (id) await openSession(id); else { applySessionFields(); renderMessages(); }
  document.documentElement.dataset.ready = '1';
  document.documentElement.dataset.readyMs = String(Math.round(performance.now()));
}

initTheme();
bind();
if (!hasMarkdown()) console.warn('markdown-it is not bundled; replies are shown as plain text');
start();
