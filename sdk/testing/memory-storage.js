'use strict';
/**
 * The Web Storage interface (localStorage/sessionStorage) for Node, where there is none, with an
 * optional quota so tests can see what the SDK does when the browser refuses a write.
 */

class QuotaExceededError extends Error {
  constructor() {
    super('The quota has been exceeded.');
    this.name = 'QuotaExceededError';
  }
}

class MemoryStorage {
  constructor(options) {
    this.items = new Map();
    this.quota = (options && options.quota) || Infinity; // in UTF-16 code units, like browsers count
    this.writes = 0;
  }

  get length() { return this.items.size; }

  key(index) { return Array.from(this.items.keys())[index] ?? null; }

  getItem(key) { return this.items.has(String(key)) ? this.items.get(String(key)) : null; }

  setItem(key, value) {
    const name = String(key);
    const text = String(value);
    const used = this.used() - (this.items.has(name) ? name.length + this.items.get(name).length : 0);
    if (used + name.length + text.length > this.quota) throw new QuotaExceededError();
    this.writes++;
    this.items.set(name, text);
  }

  removeItem(key) { this.items.delete(String(key)); }

  clear() { this.items.clear(); }

  used() {
    let total = 0;
    for (const [key, value] of this.items) total += key.length + value.length;
    return total;
  }
}

module.exports = { MemoryStorage, QuotaExceededError };
