// The handler's own test, with node's test runner: `node --test` in this folder.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { handle } = require('./handler.js');

test('tags by score, drops sign-outs and quarantines what is not an object', () => {
  const answer = handle({
    config: { high: 0.8 },
    events: [{ event_type: 'purchase', score: 0.93 }, { event_type: 'click', score: 0.4 }, { event_type: 'logout' }, 7],
  });
  assert.deepStrictEqual(answer.outcomes, [
    { outcome: 'forward', event: { event_type: 'purchase', score: 0.93, tier: 'high' } },
    { outcome: 'forward', event: { event_type: 'click', score: 0.4, tier: 'standard' } },
    { outcome: 'drop', reason: 'not_billable' },
    { outcome: 'quarantine', reason: 'not_an_object' },
  ]);
});

test('one outcome per event, none for none', () => {
  assert.deepStrictEqual(handle({ events: [] }), { outcomes: [] });
});
