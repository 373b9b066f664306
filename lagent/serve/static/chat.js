// The chat page of `lagent serve`: plain browser JavaScript, no build step.
// Engines get the whole conversation with each request; agents keep theirs on
// the server under a session id, and their steps (tool calls, results) arrive
// in each stream chunk's `lagent.event`.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const page = {
    model: $('model'), apiKey: $('api-key'), newChat: $('new-chat'), messages: $('messages'),
    error: $('error'), composer: $('composer'), prompt: $('prompt'), send: $('send'), stop: $('stop'),
  };
  const PLAIN_REPLY = 1; // AgentStatusCode.STREAM_ING: a model reply that calls no tool
  const ANSWERED = 0; // AgentStatusCode.END
  const state = { models: new Map(), history: [], sessions: new Map(), controller: null };

  // ------------------------------------------------------------------ server

  function headers() {
    const result = { 'Content-Type': 'application/json' };
    const key = page.apiKey.value.trim();
    if (key) result.Authorization = `Bearer ${key}`;
    return result;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return (body.error && body.error.message) || JSON.stringify(body);
    } catch (_) {
      return response.statusText || 'no details';
    }
  }

  // The data of each Server-Sent Event, decoded; ends at [DONE].
  async function* events(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the server ended the stream early');
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split('\n').filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).replace(/^ /, '')).join('\n');
        if (!data) continue;
        if (data === '[DONE]') return;
        yield JSON.parse(data);
      }
    }
  }

  async function loadModels() {
    hideError();
    let response;
    try {
      response = await fetch('v1/models', { headers: headers() });
    } catch (error) {
      showError(`cannot reach the server: ${error.message}`);
      return;
    }
    if (!response.ok) {
      showError(`cannot list the models (HTTP ${response.status}): ${await errorText(response)}`);
      return;
    }
    const previous = page.model.value;
    page.model.replaceChildren();
    state.models.clear();
    for (const entry of (await response.json()).data) {
      state.models.set(entry.id, entry);
      const info = entry.lagent || {};
      const label = info.kind === 'agent' ? `${entry.id} (agent: ${(info.tools || []).join(', ') || 'no tools'})` : entry.id;
      page.model.append(new Option(label, entry.id));
    }
    if (state.models.has(previous)) page.model.value = previous;
  }

  const isAgent = (name) => ((state.models.get(name) || {}).lagent || {}).kind === 'agent';

  function sessionFor(model) {
    if (!state.sessions.has(model)) {
      const id = window.crypto && crypto.randomUUID ? crypto.randomUUID()
        : `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
      state.sessions.set(model, id);
    }
    return state.sessions.get(model);
  }

  // ------------------------------------------------------------------ view

  function showError(text) {
    page.error.textContent = text;
    page.error.hidden = false;
  }

  function hideError() {
    page.error.hidden = true;
    page.error.textContent = '';
  }

  const scrollDown = () => { page.messages.scrollTop = page.messages.scrollHeight; };

  function bubble(role, text) {
    const element = document.createElement('div');
    element.className = `msg ${role}`;
    if (role === 'assistant') {
      const steps = document.createElement('div');
      steps.className = 'steps';
      element.append(steps);
    }
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    element.append(body);
    page.messages.append(element);
    scrollDown();
    return element;
  }

  // One assistant answer as its chunks arrive: text deltas, or an agent's events.
  class Answer {
    constructor(element) {
      this.element = element;
      this.steps = element.querySelector('.steps');
      this.body = element.querySelector('.text');
      this.text = '';
      this.live = '';
      this.liveTurn = null;
    }

    add(chunk) {
      const event = chunk.lagent && chunk.lagent.event;
      if (event) {
        this.agentEvent(event);
      } else {
        const choice = (chunk.choices || [])[0];
        const delta = (choice && choice.delta) || {};
        if (delta.content) this.show((this.text += delta.content));
        for (const call of delta.tool_calls || []) {
          if (call.function && call.function.name) this.step('tool-call', 'tool call', call.function.name);
        }
      }
      scrollDown();
    }

    agentEvent(event) {
      switch (event.kind) {
        case 'text_delta':
          if (this.liveTurn !== event.turn) this.live = '';
          this.liveTurn = event.turn;
          this.show((this.live += event.text));
          break;
        case 'model_reply':
          if (event.status !== PLAIN_REPLY) { // the reply calls tools: its text was a thought
            if (event.text.trim()) this.step('thought', 'thought', event.text.trim());
            this.show('');
          }
          break;
        case 'tool_call':
          this.step('tool-call', 'tool call', `${event.call.function.name}(${event.call.function.arguments})`);
          break;
        case 'tool_result':
          this.step(event.result.state === 0 ? 'tool-result' : 'tool-result failed', 'result', event.observation);
          break;
        case 'final_answer':
          this.text = event.text;
          this.show(event.text);
          if (event.status !== ANSWERED) this.note('the agent used all its turns without an answer');
          break;
        default:
          break;
      }
    }

    show(text) {
      this.body.textContent = text;
    }

    step(kind, label, text) {
      const element = document.createElement('div');
      element.className = `step ${kind}`;
      const name = document.createElement('span');
      name.className = 'label';
      name.textContent = `${label}:`;
      const value = document.createElement('code');
      value.textContent = text;
      element.append(name, value);
      this.steps.append(element);
    }

    note(text) {
      const element = document.createElement('span');
      element.className = 'note';
      element.textContent = `(${text})`;
      this.element.append(element);
    }
  }

  // ------------------------------------------------------------------ actions

  function setBusy(busy) {
    page.send.disabled = busy;
    page.stop.disabled = !busy;
  }

  async function send() {
    const text = page.prompt.value.trim();
    const model = page.model.value;
    if (!text || state.controller) return;
    if (!model) {
      showError('no model to talk to: check the API key, then reload the page');
      return;
    }
    hideError();
    page.prompt.value = '';
    bubble('user', text);
    const question = { role: 'user', content: text };
    const agent = isAgent(model);
    const request = agent
      ? { model, stream: true, messages: [question], session_id: sessionFor(model) }
      : { model, stream: true, messages: [...state.history, question] };
    const element = bubble('assistant', '');
    element.classList.add('streaming');
    const answer = new Answer(element);
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    try {
      const response = await fetch('v1/chat/completions', {
        method: 'POST', headers: headers(), body: JSON.stringify(request), signal: controller.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}: ${await errorText(response)}`);
      for await (const chunk of events(response)) {
        if (chunk.error) throw new Error(chunk.error.message || 'the server reported an error');
        answer.add(chunk);
      }
      state.history.push(question, { role: 'assistant', content: answer.text });
    } catch (error) {
      if (error.name === 'AbortError') {
        answer.note('stopped');
        if (!agent && answer.text) state.history.push(question, { role: 'assistant', content: answer.text });
      } else {
        answer.note('failed');
        showError(error.message);
      }
    } finally {
      element.classList.remove('streaming');
      state.controller = null;
      setBusy(false);
      page.prompt.focus();
    }
  }

  function stop() {
    if (state.controller) state.controller.abort();
  }

  async function newChat() {
    stop();
    const sessions = [...state.sessions.values()];
    state.sessions.clear();
    state.history = [];
    page.messages.replaceChildren();
    hideError();
    for (const id of sessions) {
      try {
        await fetch(`v1/sessions/${encodeURIComponent(id)}`, { method: 'DELETE', headers: headers() });
      } catch (_) { /* a session the server never kept */ }
    }
  }

  page.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    send();
  });
  page.prompt.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    } else if (event.key === 'Escape') {
      stop();
    }
  });
  page.stop.addEventListener('click', stop);
  page.newChat.addEventListener('click', newChat);
  page.apiKey.value = localStorage.getItem('lagent.apiKey') || '';
  page.apiKey.addEventListener('change', () => {
    localStorage.setItem('lagent.apiKey', page.apiKey.value.trim());
    loadModels();
  });
  loadModels();
  page.prompt.focus();
})();
