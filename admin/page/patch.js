// Updating the status page in place. status.js builds, at every refresh,
// the elements the page should show as if it drew them from scratch;
// patchChildren makes the elements already on the page look like them,
// changing only the text and attributes that differ and adding or removing
// only the elements that came or went. An element that shows the same
// thing stays the same node, so what the admin did with it (text selected
// in it, a fold opened, the page scrolled past it) survives the refresh.
"use strict";

// KEYS are the attributes that say what an element shows, the first one
// present wins: a card its listener, a row its upstream or its client, a
// figure its status.json field. Elements with none of them are matched to
// the old ones of their tag in order.
const KEYS = ["id", "data-listener", "data-upstream", "data-trouble", "data-client", "data-field"];

// OWNED are the attributes the admin changes by using the page, not the
// script: a fold keeps the open state the admin gave it.
const OWNED = new Set(["open"]);

function nodeKey(n) {
  if (n.nodeType !== Node.ELEMENT_NODE) return n.nodeName;
  const k = KEYS.find(a => n.hasAttribute(a));
  return k ? n.nodeName + " " + k + "=" + n.getAttribute(k) : n.nodeName;
}

// patch makes the node old look like fresh, which it leaves unused, and
// returns old.
function patch(old, fresh) {
  if (old.nodeType !== Node.ELEMENT_NODE) {
    if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
    return old;
  }
  for (const a of Array.from(old.attributes)) {
    if (!OWNED.has(a.name) && !fresh.hasAttribute(a.name)) old.removeAttribute(a.name);
  }
  for (const a of fresh.attributes) {
    if (!OWNED.has(a.name) && old.getAttribute(a.name) !== a.value) old.setAttribute(a.name, a.value);
  }
  patchChildren(old, Array.from(fresh.childNodes));
  return old;
}

// patchChildren makes parent's children look like fresh, a list of nodes
// and strings (null ones skipped), as parent.replaceChildren(...fresh)
// would, but keeping every child that has a fresh node of the same key.
function patchChildren(parent, fresh) {
  const old = new Map(); // key -> parent's children of that key, in order
  for (const c of parent.childNodes) {
    const k = nodeKey(c);
    if (!old.has(k)) old.set(k, []);
    old.get(k).push(c);
  }
  const wanted = [];
  for (let f of fresh) {
    if (f === null || f === undefined) continue;
    if (typeof f === "string") f = document.createTextNode(f);
    const same = old.get(nodeKey(f));
    wanted.push(same && same.length > 0 ? patch(same.shift(), f) : f);
  }
  for (const gone of old.values()) for (const n of gone) n.remove();
  // The kept children are in their old order; only a new child, or one
  // whose listener moved in the config, is inserted.
  let at = parent.firstChild;
  for (const n of wanted) {
    if (n === at) at = at.nextSibling;
    else parent.insertBefore(n, at);
  }
}

// setText sets e's text, leaving its text node alone when it is unchanged
// (textContent would replace it, and a selection in it).
function setText(e, text) {
  patchChildren(e, [text]);
}
