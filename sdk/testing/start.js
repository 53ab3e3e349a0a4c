'use strict';
/** Starting an SDK instance for a Node test: no automatic page view or rendering, a fast clock. */
const sdk = require('../tailor.js');
const { nodeEnv } = require('./node-env.js');

function start(config, env) {
  const environment = env || nodeEnv();
  const tailor = sdk.createTailor(environment);
  tailor.init(Object.assign({
    endpoint: 'http://127.0.0.1:9', // nothing listens there; tests that deliver pass a server's url
    autoPageView: false,
    autoRender: false,
    flushInterval: 20,
    minBackoff: 20,
    maxBackoff: 200,
  }, config || {}));
  return { tailor, env: environment };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = { start, sleep };
