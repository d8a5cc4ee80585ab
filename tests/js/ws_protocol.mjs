// Drives confab's /ws with the `ws` package (a real, independent WebSocket
// client) and the API's error shape with the official `openai` package.
// usage: node ws_protocol.mjs PORT KEY
// Prints one line per check and exits non-zero on the first failure.
import WebSocket from 'ws';
import OpenAI from 'openai';

const [port, key] = process.argv.slice(2);
const base = `127.0.0.1:${port}`;
let failed = false;

function check(cond, what) {
  console.log(`${cond ? 'ok' : 'FAIL'} - ${what}`);
  if (!cond) failed = true;
}

// Opens a socket and returns {ws, next()} where next() resolves with the
// next parsed frame (or rejects after 5 s).
function open(url, opts) {
  const ws = new WebSocket(url, opts);
  const frames = [];
  const waiters = [];
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString());
    if (waiters.length) waiters.shift()(f); else frames.push(f);
  });
  const closed = new Promise((res) => ws.on('close', (code) => res(code)));
  const next = () => frames.length ? Promise.resolve(frames.shift()) :
    new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error('no frame within 5 s')), 5000);
      waiters.push((f) => { clearTimeout(t); res(f); });
    });
  return { ws, next, closed, ready: new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); }) };
}

async function main() {
  // No key: one error frame, then close 1008.
  const anon = open(`ws://${base}/ws`);
  await anon.ready;
  const f0 = await anon.next();
  check(f0.type === 'error' && f0.kind === 'auth', 'missing key gets an auth error frame');
  check(await anon.closed === 1008, 'and a close with code 1008');

  const c = open(`ws://${base}/ws`, { headers: { Authorization: `Bearer ${key}` } });
  await c.ready;
  const hello = await c.next();
  check(hello.type === 'hello' && hello.protocol === 1, 'hello frame with protocol 1');

  c.ws.send('{"op": "send", ');
  let f = await c.next();
  check(f.type === 'error' && f.kind === 'bad_json', 'bad JSON gets a bad_json error frame');
  c.ws.send(JSON.stringify({ op: 'teleport', id: 'x1' }));
  f = await c.next();
  check(f.kind === 'unknown_op' && f.ref === 'x1', 'unknown op is named and the id echoed as ref');
  c.ws.send(JSON.stringify({ op: 'set', generation_id: 'gen_nope', temperature: 0.5 }));
  f = await c.next();
  check(f.kind === 'not_found', 'set on an unknown generation is not_found');
  c.ws.send(JSON.stringify({ op: 'send', content: 'hello' }));
  f = await c.next();
  check(f.kind === 'unavailable' && f.message === 'no chat service configured',
        'send without a chat service says so');
  c.ws.send(JSON.stringify({ op: 'ping', id: 2 }));
  f = await c.next();
  check(f.type === 'pong' && f.ref === 2, 'connection still open after errors (ping/pong)');
  c.ws.close();

  // The official OpenAI client sees confab's errors in OpenAI's shape.
  const good = new OpenAI({ apiKey: key, baseURL: `http://${base}/v1`, maxRetries: 0 });
  try {
    await good.embeddings.create({ model: 'none', input: 'x' });
    check(false, 'unknown route raises');
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'unknown_url',
          'unknown route raises NotFoundError with code unknown_url');
  }
  // Chat completions through the server's OpenAI rendering (the C test
  // mounts a stand-in chat service on /v1/chat/completions).
  const msgs = [{ role: 'user', content: 'hello world' }];
  const done = await good.chat.completions.create({ model: 'm', messages: msgs });
  check(done.object === 'chat.completion' && done.choices[0].message.content === 'You said: hello world' &&
        done.choices[0].finish_reason === 'stop' && done.usage.total_tokens === 16,
        'non-streamed completion parsed by the official client');
  let text = '', usage = null, finish = null;
  const stream = await good.chat.completions.create({ model: 'm', messages: msgs, stream: true,
                                                      stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    if (chunk.choices.length) {
      text += chunk.choices[0].delta.content ?? '';
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  check(text === 'You said: hello world' && finish === 'stop' && usage && usage.completion_tokens === 4,
        'streamed completion with include_usage parsed by the official client');
  try {
    await good.chat.completions.create({ model: 'boom', messages: msgs });
    check(false, 'upstream failure raises');
  } catch (e) {
    check(e instanceof OpenAI.APIError && e.status === 502 && e.code === 'http_5xx',
          'upstream failure raises APIError 502 with code http_5xx');
  }
  try {
    const s2 = await good.chat.completions.create({ model: 'boom', messages: msgs, stream: true });
    for await (const chunk of s2) { void chunk; }
    check(false, 'mid-stream error raises');
  } catch (e) {
    check(e instanceof OpenAI.APIError && /upstream failed/.test(e.message),
          'mid-stream error event raises APIError in the client');
  }

  const bad = new OpenAI({ apiKey: 'sk-wrong', baseURL: `http://${base}/v1`, maxRetries: 0 });
  try {
    await bad.embeddings.create({ model: 'none', input: 'x' });
    check(false, 'wrong key raises');
  } catch (e) {
    check(e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === 'invalid_api_key',
          'wrong key raises AuthenticationError with code invalid_api_key');
  }
}

main().then(() => process.exit(failed ? 1 : 0), (e) => { console.log(`FAIL - ${e.message}`); process.exit(1); });
