// A stand-in for anywidget's model: get/set/on/off/send, plus emit() to play kernel messages.

/** A fake anywidget model holding `state`; `sent` collects what the view sends to the kernel. */
export function fakeModel(state = {}) {
  const handlers = {};
  const sent = [];
  const model = {
    sent,
    get: (key) => state[key],
    set(key, value) {
      state[key] = value;
      for (const f of handlers[`change:${key}`] || []) f();
    },
    /** Set several traits, then fire their change events (like one state message from the kernel). */
    update(values) {
      Object.assign(state, values);
      for (const key of Object.keys(values)) for (const f of handlers[`change:${key}`] || []) f();
    },
    on(name, f) {
      (handlers[name] ||= []).push(f);
    },
    off(name, f) {
      handlers[name] = (handlers[name] || []).filter((g) => g !== f);
    },
    send(msg) {
      sent.push(msg);
    },
    emit(name, ...args) {
      for (const f of handlers[name] || []) f(...args);
    },
    listeners: (name) => (handlers[name] || []).length,
  };
  return model;
}
