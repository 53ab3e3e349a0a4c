'use strict';
// Signed identity (docs/identity.md): a token from the shop's backend goes on decide, events and
// feedback; its sub and sid are the user and session; a refused batch stays queued for a fresh token.
const { test, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { RecordingServer, waitFor } = require('../testing/recording-server.js');
const { start } = require('../testing/start.js');

let server;
const running = [];
function started(config) {
  const result = start(Object.assign({ endpoint: server.url }, config));
  running.push(result.tailor);
  return result;
}
beforeEach(async () => { server = await new RecordingServer().start(); });
afterEach(async () => {
  for (const tailor of running.splice(0)) tailor.destroy();
  await server.stop();
});

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
// Signed by the shop's backend; the SDK reads the claims and never checks the signature (the server does).
const jwt = (claims) => `${b64url({ alg: 'HS256', kid: 'k1' })}.${b64url(claims)}.c2lnbmF0dXJl`;
const ALICE = jwt({ sub: 'alice', sid: 'shop-session-1', iat: 1, exp: 9999999999 });

test('identify({token}) sends the token on decide, events and feedback with its user and session', async () => {
  const { tailor } = started();
  assert.equal(tailor.identify({ token: ALICE }), 'alice');
  const id = tailor.track('click');
  await waitFor(() => server.keptEvents().length === 1, 2000, 'the event');
  const [post] = server.posts();
  assert.equal(post.headers.authorization, `Bearer ${ALICE}`);
  const [event] = post.json.events;
  assert.equal(event.id, id);
  assert.equal(event.userId, 'alice');
  assert.equal(event.sessionId, 'shop-session-1');
  await tailor.renderer.decide(['hero']);
  const [decide] = server.decides();
  assert.equal(decide.headers.authorization, `Bearer ${ALICE}`);
  assert.equal(decide.query.get('user'), 'alice');
  assert.equal(decide.query.get('session'), 'shop-session-1');
  assert.equal(await tailor.feedback('d1', 'click'), true);
  const feedback = server.requests.find((r) => r.path === '/v1/feedback');
  assert.equal(feedback.headers.authorization, `Bearer ${ALICE}`);
});

test('the token can come with the configuration, and without one nothing is sent', async () => {
  const { tailor } = started({ token: ALICE });
  assert.equal(tailor.identity().user, 'alice');
  const { tailor: plain } = started();
  plain.track('click');
  await waitFor(() => server.posts().length === 1, 2000, 'the unsigned post');
  assert.equal(server.posts()[0].headers.authorization, undefined);
  tailor.reset();
  assert.notEqual(tailor.identity().user, 'alice');
});

test('a 401 keeps the events queued, says unauthorized, and a fresh token sends them', async () => {
  let refuse = true;
  server.respond = (request) => refuse && request.path === '/v1/events' && {
    status: 401, body: { type: 'https://tailor.dev/problems/identity-expired', status: 401 },
  };
  const { tailor } = started({ minBackoff: 5000, maxBackoff: 5000, token: ALICE });
  const refusals = [];
  tailor.on('unauthorized', (detail) => refusals.push(detail));
  tailor.track('click');
  await waitFor(() => refusals.length === 1, 2000, 'the refusal');
  assert.deepEqual(refusals[0], { route: '/v1/events', status: 401 });
  assert.equal(tailor.queue.size(), 1, 'kept for the next token');
  refuse = false;
  const fresh = jwt({ sub: 'alice', sid: 'shop-session-1', iat: 2, exp: 9999999999 });
  tailor.identify({ token: fresh }); // well before the 5 s backoff ends
  await waitFor(() => server.keptEvents().length === 1, 2000, 'the retry with the fresh token');
  assert.equal(server.posts().at(-1).headers.authorization, `Bearer ${fresh}`);
});

test('a token without sub or sid is refused on identify', () => {
  const { tailor } = started();
  assert.throws(() => tailor.identify({ token: jwt({ sub: 'alice' }) }), /sub.*sid/);
  assert.throws(() => tailor.identify({ token: 'nonsense' }), TypeError);
});
