// The browser side of the React test page: hydrates the server's markup with the same tree.
import { createElement } from 'react';
import { hydrateRoot } from 'react-dom/client';
import { App } from './app.mjs';

const props = JSON.parse(document.getElementById('page-props').textContent);
hydrateRoot(document.getElementById('root'), createElement(App, props), {
  onRecoverableError: (error) => { window.__hydrationErrors.push(String(error && error.message)); },
});
