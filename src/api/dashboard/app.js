// Shoal's dashboard: reads the cluster through this node's API (the token
// from the login form, sent in the Authorization header, kept in this
// tab's sessionStorage) once a second and draws it. No framework, no CDN.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY = 'shoal-api-token';
let token = sessionStorage.getItem(KEY) || '';
let last = { bandwidth: null, at: 0 };
let rates = {};
let timer = null;

class Unauthorized extends Error {}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, cache: 'no-store' });
  if (r.status === 401) throw new Unauthorized('the API token was refused');
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}

// Elements are built with textContent only: names and messages come from
// users and peers, never as HTML.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('data-') || k === 'title') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function fill(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}

function hue(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return ((h >>> 0) % 360);
}

// The workload a pod belongs to: its Deployment (the ReplicaSet's name
// without the template hash), DaemonSet, Job or, failing those, itself.
function workloadOf(p) {
  const ns = p.metadata.namespace || 'default';
  const o = (p.metadata.ownerReferences || [])[0];
  if (!o) return ns + '/' + p.metadata.name;
  if (o.kind === 'ReplicaSet') return ns + '/' + o.name.replace(/-[0-9a-f]{10}$/, '');
  return ns + '/' + o.name;
}

function ready(p) {
  return (p.status.conditions || []).some((c) => c.type === 'Ready' && c.status === 'True');
}

function ago(ts) {
  if (!ts) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return s + 's';
  if (s < 7200) return Math.round(s / 60) + 'm';
  return Math.round(s / 3600) + 'h';
}

function bytes(n) {
  if (n < 1024) return n.toFixed(0) + ' B';
  if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1048576).toFixed(1) + ' MiB';
}

function drawNodes(nodes, bw) {
  fill($('nodes'), nodes.map((n) => {
    const s = n.status || {};
    const name = n.metadata.name;
    const alloc = s.allocated || {}, cap = s.allocatable || {};
    const note = n.spec && n.spec.unschedulable && s.state === 'Ready' ? ' (no new pods: cordoned or settling)' : '';
    const r = rates[name];
    return el('tr', { 'data-node': name, 'data-state': s.state },
      el('td', {}, name),
      el('td', { class: 'state state-' + s.state }, s.state, el('span', { class: 'muted' }, note)),
      el('td', {}, ago(s.stateSince)),
      el('td', {}, (s.addresses || []).filter((a) => a.type === 'InternalIP').map((a) => a.address).join(' ')),
      el('td', {}, (alloc.cpu || '0') + ' / ' + (cap.cpu || '?')),
      el('td', {}, (alloc.memory || '0') + ' / ' + (cap.memory || '?')),
      el('td', {}, (alloc.pods || '0') + ' / ' + (cap.pods || '?')),
      el('td', { 'data-bandwidth': name }, r === undefined ? (s.state === 'Ready' || s.state === 'Suspect' ? '…' : '') : bytes(r) + '/s'));
  }));
  const un = (bw && bw.unreachable) || [];
  $('unreachable').textContent = un.length ? 'No bandwidth figures from: ' + un.map((u) => u.node + ' (' + u.error + ')').join(', ') : '';
}

function drawPlacement(nodes, pods) {
  const byNode = {};
  for (const n of nodes) byNode[n.metadata.name] = [];
  for (const p of pods) {
    const n = p.spec.nodeName;
    if (!n) continue;
    (byNode[n] = byNode[n] || []).push(p);
  }
  const states = Object.fromEntries(nodes.map((n) => [n.metadata.name, (n.status || {}).state]));
  $('placement').replaceChildren(...Object.keys(byNode).sort().map((node) => {
    const st = states[node] || 'Unknown';
    const alive = st === 'Ready' || st === 'Suspect';
    const chips = byNode[node]
      .filter((p) => p.status.phase !== 'Succeeded' && p.status.phase !== 'Failed')
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
      .map((p) => {
        const w = workloadOf(p);
        const colour = 'hsl(' + hue(w) + ' 55% 42%)';
        const ok = ready(p);
        return el('span', {
          class: 'chip' + (ok ? '' : ' unready'),
          style: ok ? 'background:' + colour : 'border-color:' + colour,
          title: p.metadata.namespace + '/' + p.metadata.name + ' (' + p.status.phase + ')',
          'data-pod': p.metadata.namespace + '/' + p.metadata.name,
          'data-node': node,
        }, w.split('/')[1] + p.metadata.name.slice(p.metadata.name.lastIndexOf('-')));
      });
    return el('div', { class: 'column' + (alive ? '' : ' dead'), 'data-column': node, 'data-state': st },
      el('h3', {}, node, el('span', { class: 'state state-' + st }, st)),
      el('div', { class: 'chips' }, ...chips));
  }));
}

function drawWorkloads(deployments, daemonsets) {
  const rows = [];
  for (const d of deployments) {
    const want = d.spec.replicas ?? 1, s = d.status || {};
    const updated = s.updatedReplicas || 0, readyN = s.readyReplicas || 0;
    const done = s.shoal && s.shoal.complete;
    const pct = want ? Math.min(100, Math.round((100 * Math.min(updated, readyN)) / want)) : 100;
    rows.push(el('tr', { 'data-workload': d.metadata.namespace + '/' + d.metadata.name },
      el('td', {}, 'deployment ', el('b', {}, d.metadata.namespace + '/' + d.metadata.name)),
      el('td', {}, readyN + '/' + want),
      el('td', {}, el('span', { class: 'bar', title: pct + ' %' }, el('span', { style: 'width:' + pct + '%' })),
        ' ' + updated + ' updated'),
      el('td', { class: 'muted' }, done ? 'rolled out (revision ' + ((s.shoal || {}).revision ?? '?') + ')' : 'rolling out')));
  }
  for (const d of daemonsets) {
    const s = d.status || {};
    rows.push(el('tr', { 'data-workload': d.metadata.namespace + '/' + d.metadata.name },
      el('td', {}, 'daemonset ', el('b', {}, d.metadata.namespace + '/' + d.metadata.name)),
      el('td', {}, (s.numberReady || 0) + '/' + (s.desiredNumberScheduled || 0)),
      el('td', {}, (s.updatedNumberScheduled || 0) + ' updated'),
      el('td', {}, '')));
  }
  fill($('workloads'), rows);
}

function drawServices(services) {
  fill($('services'), services.map((s) => {
    const ports = (s.spec.ports || []).map((p) => p.port + ':' + (p.nodePort || '?') + '/' + (p.protocol || 'TCP')).join(', ');
    const eps = [];
    for (const p of (s.status && s.status.ports) || []) for (const e of p.endpoints || []) eps.push(e.pod.split('/')[1] + ' on ' + e.node);
    return el('tr', { 'data-service': s.metadata.namespace + '/' + s.metadata.name },
      el('td', {}, s.metadata.namespace + '/' + s.metadata.name),
      el('td', {}, ports),
      el('td', {}, eps.length ? eps.join(', ') : el('span', { class: 'muted' }, 'no Ready endpoint')));
  }));
}

function drawEvents(events) {
  const newest = events.items.slice(0, 40);
  $('events-unreachable').textContent = events.unreachable.length
    ? 'No events from: ' + events.unreachable.map((u) => u.node + ' (' + u.error + ')').join(', ') : '';
  fill($('events'), newest.map((e) => el('tr', { class: e.type === 'Warning' ? 'error' : '' },
    el('td', {}, (e.lastTimestamp || '').replace('T', ' ').slice(11, 19)),
    el('td', {}, (e.source || {}).host || ''),
    el('td', {}, e.involvedObject.kind + ' ' + (e.involvedObject.namespace && e.involvedObject.kind !== 'Node' ? e.involvedObject.namespace + '/' : '') + e.involvedObject.name),
    el('td', {}, e.reason || ''),
    el('td', {}, e.message || ''))));
}

function rateOf(bw) {
  const now = performance.now();
  if (last.bandwidth && bw && bw.items) {
    const dt = (now - last.at) / 1000;
    const before = Object.fromEntries(last.bandwidth.items.map((i) => [i.node, i]));
    rates = {}; // a node that did not answer has no figure, not its last one
    for (const i of bw.items) {
      const b = before[i.node];
      if (b && dt > 0) rates[i.node] = Math.max(0, (i.gossipBytesSent + i.gossipBytesReceived - b.gossipBytesSent - b.gossipBytesReceived) / dt);
    }
  }
  if (bw && bw.items) last = { bandwidth: bw, at: now };
}

let tick = 0;
async function refresh() {
  try {
    const bwWanted = tick++ % 2 === 0;
    const [nodes, pods, deps, dss, svcs, events, cluster, bw] = await Promise.all([
      api('/api/v1/nodes'), api('/api/v1/pods'), api('/apis/apps/v1/deployments'), api('/apis/apps/v1/daemonsets'),
      api('/api/v1/services'), api('/shoal/v1/events'), api('/shoal/v1/cluster'),
      bwWanted ? api('/shoal/v1/bandwidth?all=true').catch(() => null) : Promise.resolve(null),
    ]);
    if (bw) rateOf(bw);
    const ns = nodes.items.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    drawNodes(ns, bw || last.bandwidth);
    drawPlacement(ns, pods.items);
    drawWorkloads(deps.items, dss.items);
    drawServices(svcs.items);
    drawEvents(events);
    $('where').textContent = 'served by ' + cluster.self;
    drawOthers(cluster);
    $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
    document.body.dataset.loaded = 'true';
  } catch (e) {
    if (e instanceof Unauthorized) return logout(e.message);
    $('status').textContent = 'cannot reach this node (' + e.message + '); open another node\'s dashboard:';
  }
}

// Links to the other alive nodes' dashboards, kept from the last answer:
// if this node dies, the page says so and the user goes on from another.
function drawOthers(cluster) {
  const others = cluster.nodes.filter((n) => n.name !== cluster.self && (n.state === 'Ready' || n.state === 'Suspect'));
  $('others').replaceChildren(...(others.length ? ['also on: '] : []), ...others.flatMap((n, i) => [
    i ? ' ' : '', el('a', { href: n.apiUrl + '/ui', 'data-other': n.name }, n.name)]));
}

function show(loggedIn) {
  $('login').hidden = loggedIn;
  $('main').hidden = !loggedIn;
  $('logout').hidden = !loggedIn;
}

function start() {
  show(true);
  refresh();
  timer = setInterval(refresh, 1000);
}

function logout(why) {
  clearInterval(timer);
  token = '';
  sessionStorage.removeItem(KEY);
  show(false);
  $('login-error').textContent = why || '';
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  token = $('token').value.trim();
  $('token').value = '';
  try {
    await api('/api/v1/nodes');
    sessionStorage.setItem(KEY, token);
    $('login-error').textContent = '';
    start();
  } catch (err) {
    token = '';
    $('login-error').textContent = err instanceof Unauthorized
      ? 'That token was refused: use the API token of this cluster (<data dir>/api-token on a node).'
      : 'This node did not answer: ' + err.message;
  }
});
$('logout').addEventListener('click', () => logout(''));
if (token) start(); else show(false);
