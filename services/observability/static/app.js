// The dashboard: polls the service's own JSON APIs and draws plain tables and SVG bars.
"use strict";
const POLL_MS = 2500;
const $ = (id) => document.getElementById(id);
const money = (v) => Number(v || 0).toLocaleString(undefined, { style: "currency", currency: "USD" });
const count = (v) => Number(v || 0).toLocaleString();
// Queue and feed names are ids; show them as words, keeping the acronyms people say.
const ACRONYMS = { ap: "AP", ehr: "EHR", erp: "ERP", mdm: "MDM", po: "PO", udi: "UDI" };
const words = (s) => {
  const text = String(s).replace(/[_-]/g, " ").toLowerCase().split(" ").map((w) => ACRONYMS[w] || w).join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1);
};
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const duration = (sec) => {
  if (sec === null || sec === undefined) return "—";
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 120) return `${sec.toFixed(1)} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  if (sec < 172800) return `${(sec / 3600).toFixed(1)} h`;
  return `${(sec / 86400).toFixed(1)} days`;
};

function tile(label, value, note, tone) {
  return `<div class="tile ${tone || ""}"><div class="label">${esc(label)}</div>` +
    `<div class="value">${esc(value)}</div><div class="note">${esc(note || "")}</div></div>`;
}

function bars(rows, format) {
  if (!rows.length) return `<p class="empty">None.</p>`;
  const max = Math.max(...rows.map((r) => r.value), 1);
  return rows.map((r) => `<div class="bar"><span class="name" title="${esc(r.name)}">${esc(r.name)}</span>` +
    `<svg viewBox="0 0 100 10" preserveAspectRatio="none"><rect width="${(100 * r.value) / max}" height="10" fill="${r.color || "var(--bar)"}"/></svg>` +
    `<span class="num">${esc(format ? format(r.value) : count(r.value))}</span></div>`).join("");
}

function table(headers, rows) {
  if (!rows.length) return `<p class="empty">None.</p>`;
  const head = headers.map((h) => `<th class="${h.num ? "num" : ""}">${esc(h.label)}</th>`).join("");
  const body = rows.map((r) => "<tr>" + r.map((c, i) =>
    `<td class="${headers[i].num ? "num" : ""}">${c}</td>`).join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function business(k) {
  const rate = k.first_pass_match_rate;
  const open = k.open_exceptions;
  const bill = k.usage_to_bill_only_po;
  $("tiles").innerHTML = [
    tile("Invoices matched first time", rate === null ? "—" : `${Math.round(rate * 100)}%`,
      `${count(k.invoices_first_pass)} of ${count(k.invoices_matched)} matched invoices`,
      rate === null ? "" : rate >= 0.9 ? "ok" : rate >= 0.75 ? "warn" : "bad"),
    tile("Open exceptions", count(open.count), `${money(open.amount)} at stake`, open.count ? "warn" : "ok"),
    tile("Invoices waiting for a receipt", count(k.invoices_awaiting_receipt.count), money(k.invoices_awaiting_receipt.amount)),
    tile("Received, not yet invoiced", money(k.received_not_invoiced.amount), `on ${count(k.received_not_invoiced.purchase_orders)} purchase order(s)`),
    tile("Paid above contract", money(k.contract_leakage.amount), `${count(k.contract_leakage.exceptions)} price differences`, Number(k.contract_leakage.amount) > 0 ? "bad" : "ok"),
    tile("Unknown items to set up", count(k.unknown_items_open), "items not in the item master", k.unknown_items_open ? "warn" : "ok"),
    tile("Implant used → bill-only PO", duration(bill.seconds.p50), `typical; ${count(bill.waiting_for_po)} still waiting`),
    tile("Items below par", count(k.below_par.open_signals), "open replenishment signals", k.below_par.open_signals ? "warn" : "ok"),
  ].join("");
  const ages = ["under_1_day", "1_to_3_days", "3_to_7_days", "over_7_days"];
  const queues = Object.entries(open.by_queue);
  $("queues").innerHTML = table(
    [{ label: "Team" }, ...ages.map((a) => ({ label: words(a), num: true })), { label: "At stake", num: true }],
    queues.map(([q, v]) => [esc(words(q)), ...ages.map((a) => count(v.ages[a])), money(v.amount)]));
  $("types").innerHTML = bars(Object.entries(open.by_type).map(([t, v]) => ({ name: words(t), value: v.count })));
  $("par").innerHTML = table(
    [{ label: "Location" }, { label: "Item" }, { label: "On hand", num: true }, { label: "Par", num: true }],
    k.below_par.items.map((i) => [esc(i.location_name || i.location_id), esc(i.item_name || i.item_id),
      count(i.on_hand), count(i.par_level)]));
}

function technical(t) {
  $("backlog").innerHTML = table(
    [{ label: "Stream" }, { label: "Consumer" }, { label: "Waiting", num: true }, { label: "In flight", num: true },
     { label: "Redelivered", num: true }, { label: "Trend", num: true }],
    t.backlog.map((b) => [esc(b.stream), esc(b.consumer), count(b.pending), count(b.ack_pending),
      count(b.redelivered), b.trend > 0 ? `<span class="down">+${b.trend}</span>` : count(b.trend)]))
    + t.not_visible.map((note) => `<p class="empty">${esc(note)}</p>`).join("");
  const lat = (name, p) => [esc(name), count(p.count), duration(p.p50), duration(p.p95), duration(p.p99)];
  $("latency").innerHTML = table(
    [{ label: "Measure" }, { label: "Events", num: true }, { label: "p50", num: true }, { label: "p95", num: true }, { label: "p99", num: true }],
    [...Object.entries(t.latency_seconds.delivery).map(([k, p]) => lat(`delivery from ${k}`, p)),
     ...Object.entries(t.latency_seconds.hop).map(([k, p]) => lat(`hop into ${k}`, p)),
     lat("end to end", t.latency_seconds.end_to_end)]);
  const dl = t.dead_letters;
  $("deadletters").innerHTML = bars(Object.entries(dl.by_service).flatMap(([s, causes]) =>
    Object.entries(causes).map(([c, n]) => ({ name: `${s}: ${c}`, value: n, color: "var(--bad)" }))))
    + table([{ label: "Service" }, { label: "Reason" }, { label: "Count", num: true }],
      t.dead_letter_reasons.map((r) => [esc(r.service), esc(r.reason), count(r.count)]));
  const known = (n) => (n === undefined || n === null ? "–" : count(n));
  $("services").innerHTML = table([{ label: "Service" }, { label: "Health" }, { label: "Last answer" },
    { label: "Outbox backlog", num: true }, { label: "Duplicates absorbed", num: true }, { label: "Open dead letters", num: true }],
    t.services.map((s) => [esc(s.service), s.up ? `<span class="up">answering</span>` : `<span class="down">silent</span>`,
      esc((s.last_seen || "").slice(11, 19)), known(s.outbox_backlog), known(s.duplicates_suppressed), known(s.open_dead_letters)]));
  $("advisories").innerHTML = t.advisories.length
    ? table([{ label: "JetStream" }, { label: "Stream" }, { label: "Consumer" }, { label: "Messages", num: true }, { label: "Last minute", num: true }],
      t.advisories.map((a) => [a.kind === "max_deliveries" ? "gave up redelivering" : "terminated by the service",
        esc(a.stream), esc(a.consumer), count(a.count), a.trend > 0 ? `<span class="down">+${a.trend}</span>` : count(a.trend)]))
    : `<p class="empty">No message given up or terminated.</p>`;
  $("feeds").innerHTML = table([{ label: "Feed" }, { label: "Quiet for", num: true }],
    Object.entries(t.feeds).map(([f, v]) => [esc(f.toUpperCase()), v.age_seconds === null ? "never heard" : duration(v.age_seconds)]));
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function refresh() {
  try {
    const [k, t] = await Promise.all([getJson("/v1/kpis"), getJson("/v1/technical")]);
    $("site").textContent = `· site ${k.site}`;
    business(k);
    technical(t);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("updated").textContent = `cannot reach the service (${error.message})`;
  }
}

document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("active", x === b));
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("hidden", v.id !== b.dataset.view));
}));

$("trace").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = new FormData(event.target).get("key").trim();
  if (!key) return;
  try {
    const found = await getJson(`/v1/timeline?key=${encodeURIComponent(key)}`);
    $("timeline").innerHTML = found.events.map((e) => `<li><span class="when">+${duration(e.since_start_seconds)}</span> ` +
      `${esc(words(e.contract.split(".").slice(1, 3).join(" ")))} <em>(${esc(e.service)})</em></li>`).join("");
  } catch (error) {
    $("timeline").innerHTML = `<li class="empty">Nothing found for ${esc(key)}.</li>`;
  }
});

refresh();
setInterval(refresh, POLL_MS);
