// What the client knows at the moment: the user, their plan, the chatrooms, the open
// conversation.

export const state = {
  user: null,
  usage: null,
  subscription: null,
  proPrice: null,
  /** Prompts a day on Basic, from the plans. */
  basicLimit: null,
  rooms: [],
  /** The open chatroom, or null for a new chat not yet created. */
  room: null,
  /** Messages of the open room by id (local ones by a temporary id): {msg, el}. */
  messages: new Map(),
  nextBefore: null,
  loadingOlder: false,
  stream: null,
  /** Bumped whenever the open room changes, so late answers for another room are dropped. */
  generation: 0,
  signin: { number: null, cooldownUntil: 0, timer: null },
};
