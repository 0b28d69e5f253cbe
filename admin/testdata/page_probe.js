// The probe TestPageUpdatesInPlace loads beside the real status page: it
// does what an admin does between refreshes (selects an address, opens a
// fold, scrolls), lets the page refresh, and writes what survived into
// <output id="probe" data-result="{json}"> for the test to read from the
// dumped DOM.
"use strict";

// updates is the page's own count of status.json reads it has drawn.
function updates() {
  return Number(document.getElementById("updated").dataset.updates || 0);
}

// drawn resolves once the page has drawn n more reads than now.
function drawn(n) {
  const target = updates() + n;
  const mark = document.getElementById("updated");
  return new Promise(resolve => {
    const seen = () => {
      if (updates() < target) return false;
      obs.disconnect();
      resolve();
      return true;
    };
    const obs = new MutationObserver(seen);
    obs.observe(mark, { attributes: true, attributeFilter: ["data-updates"] });
    seen();
  });
}

function card(name) {
  return document.querySelector('[data-listener="' + name + '"]');
}

// selectText selects the whole of the text node node.
function selectText(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const sel = document.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
  return sel.toString();
}

// selection is what the admin still has selected, and whether it is still
// in the page (a redrawn element leaves it in a detached node).
function selection() {
  const sel = document.getSelection();
  return { text: sel.toString(), connected: !!sel.anchorNode && sel.anchorNode.isConnected };
}

function field(listener, name) {
  return card(listener).querySelector('[data-field="' + name + '"]').textContent;
}

async function probe(result) {
  if (updates() < 1) await drawn(1 - updates());
  result.step = "first draw";
  const up = card("cms-http").querySelector('[data-upstream="192.0.2.10:80"]');
  result.selected = selectText(up.firstChild);
  card("rtb").querySelector('[data-upstreams="all"]').open = true;
  window.scrollTo(0, 150);
  result.scrolled = window.scrollY;
  result.acceptedBefore = field("cms-http", "accepted");
  await drawn(2);
  result.step = "two draws";
  result.afterRefresh = selection();
  result.acceptedAfter = field("cms-http", "accepted");
  result.foldOpen = card("rtb").querySelector('[data-upstreams="all"]').open;
  result.scrollAfter = window.scrollY;

  const client = document.querySelector('[data-client="198.51.100.7:40000"] td:nth-child(3)');
  result.selectedClient = selectText(client.firstChild);
  for (const c of document.querySelectorAll("[data-listener]")) c.probeMark = c.dataset.listener;
  card("cms-http").querySelector('[data-upstream="192.0.2.10:80"]').probeMark = "kept";
  const resp = await fetch("reload", { method: "POST" });
  if (!resp.ok) throw new Error("reload: " + resp.status);
  await drawn(2);
  result.step = "reloaded";
  result.afterReload = selection();
  result.cards = Array.from(document.querySelectorAll("[data-listener]"),
    c => ({ name: c.dataset.listener, kept: c.probeMark === c.dataset.listener }));
  result.upstreams = Array.from(card("cms-http").querySelectorAll("[data-upstream]"),
    li => ({ name: li.dataset.upstream, kept: li.probeMark === "kept" }));
  result.step = "done";
}

const result = { step: "start" };
probe(result)
  .catch(e => { result.error = String(e && e.stack || e); })
  .finally(() => {
    const out = document.createElement("output");
    out.id = "probe";
    out.dataset.result = JSON.stringify(result);
    document.body.append(out);
  });
