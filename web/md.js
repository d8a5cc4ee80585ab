// md — replies as Markdown, safely.
//
// markdown-it (bundled from npm at build time as /vendor/markdown-it.min.js)
// runs with html:false, so raw HTML in a reply comes out as escaped text,
// and its link validator drops javascript:, vbscript:, file: and most data:
// URLs. As a second wall, its output is parsed inside an inert <template>
// (no scripts run, no images load) and every element and attribute not on a
// short allow-list is removed before the fragment joins the page. Images
// become links (a reply must not make the browser fetch anything). Code
// blocks get a Copy button. Without markdown-it, text is shown as is.

const md = typeof window.markdownit === 'function'
  ? window.markdownit({ html: false, linkify: true, typographer: false, breaks: false })
  : null;

export const hasMarkdown = () => md !== null;

const ALLOWED = new Set(['P', 'BR', 'HR', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'STRONG', 'EM', 'S', 'DEL',
  'CODE', 'PRE', 'BLOCKQUOTE', 'UL', 'OL', 'LI', 'A', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD', 'SUP', 'SUB']);
const ATTRS = { A: ['href', 'title'], OL: ['start'], CODE: ['class'], TH: ['style'], TD: ['style'] };
const SAFE_URL = /^(https?:|mailto:|#|\/(?!\/))/i;

function sanitize(root) {
  // Walk a static list: the tree changes under us.
  for (const node of Array.from(root.querySelectorAll('*'))) {
    if (!node.isConnected && !root.contains(node)) continue;
    const tag = node.tagName;
    if (tag === 'IMG') {
      const src = node.getAttribute('src') || '';
      const alt = node.getAttribute('alt') || 'image';
      const a = document.createElement('a');
      a.textContent = '[' + alt + ']';
      if (SAFE_URL.test(src)) a.setAttribute('href', src);
      node.replaceWith(a);
      fixLink(a);
      continue;
    }
    if (!ALLOWED.has(tag)) {
      node.replaceWith(document.createTextNode(node.textContent || ''));
      continue;
    }
    const keep = ATTRS[tag] || [];
    for (const at of Array.from(node.attributes)) {
      if (!keep.includes(at.name)) node.removeAttribute(at.name);
    }
    if (tag === 'A') fixLink(node);
    if (tag === 'CODE' && !/^language-[\w+#.-]{1,32}$/.test(node.getAttribute('class') || '')) node.removeAttribute('class');
    if ((tag === 'TH' || tag === 'TD') && !/^text-align:(left|right|center)$/.test(node.getAttribute('style') || '')) node.removeAttribute('style');
    if (tag === 'OL' && !/^\d{1,9}$/.test(node.getAttribute('start') || '')) node.removeAttribute('start');
  }
}
function fixLink(a) {
  const href = a.getAttribute('href');
  if (href != null && !SAFE_URL.test(href.trim())) a.removeAttribute('href');
  a.setAttribute('target', '_blank');
  a.setAttribute('rel', 'noopener noreferrer nofollow');
}
function addCopyButtons(root) {
  for (const pre of Array.from(root.querySelectorAll('pre'))) {
    const wrap = document.createElement('div');
    wrap.className = 'codeblock';
    pre.replaceWith(wrap);
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'copy';
    btn.textContent = 'Copy';
    btn.setAttribute('aria-label', 'Copy code');
    btn.addEventListener('click', () => {
      document.dispatchEvent(new CustomEvent('confab:copy', { detail: pre.textContent }));
    });
    wrap.append(pre, btn);
  }
}

// Renders TEXT as Markdown into EL (replacing its children).
export function renderMarkdown(el, text) {
  if (!md) return renderPlain(el, text);
  const tpl = document.createElement('template');
  tpl.innerHTML = md.render(text);
  sanitize(tpl.content);
  addCopyButtons(tpl.content);
  el.classList.remove('plain');
  el.replaceChildren(tpl.content);
}

// Renders TEXT as plain text (line breaks kept by CSS).
export function renderPlain(el, text) {
  el.classList.add('plain');
  el.textContent = text;
}
