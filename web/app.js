// covoit — the page for residents, drivers, shops and the desk.
//
// One file, no build step, nothing fetched from elsewhere. Keys stay in the browser:
// each person's Ed25519 key is made with WebCrypto, kept non-extractable in
// IndexedDB, and signs commands exactly as docs/protocol.md says (canonical JSON,
// "covoit/command/v1\n" + body). The server never sees a private key. The key backup
// is offered once, when the key is made: it is the only moment the key can be
// exported.

const PREFIX = "covoit/command/v1\n";
const VALID_MS = 10 * 60 * 1000;

// ---------------------------------------------------------------------------------
// Words, in French (the default) and English.

const TEXT = {
  fr: {
    skip: "Aller au contenu", language: "Langue",
    home: "Accueil", account: "Mon compte", pay: "Payer", offer: "Proposer un trajet", request: "Demander un trajet",
    rides: "Mes trajets", points: "Points de rencontre", desk: "Guichet",
    welcome: "Bienvenue sur covoit",
    intro: "Le covoiturage du village, payé en monnaie locale. Les passagers paient les conducteurs au kilomètre ; les conducteurs dépensent chez les commerçants.",
    join: "Rejoindre", your_name: "Votre nom", name_hint: "Le nom que verront l'accueil et les personnes avec qui vous voyagez.",
    restore: "J'ai déjà une clé", key_file: "Fichier de sauvegarde de la clé", restore_button: "Restaurer ma clé",
    account_id: "Numéro de compte", restore_account_hint: "Le numéro de compte reçu à l'inscription.",
    backup_title: "Gardez une copie de votre clé",
    backup_text: "Votre clé ne quitte jamais cet appareil. Téléchargez-en une copie maintenant et gardez-la en lieu sûr : c'est le seul moment où c'est possible.",
    backup_button: "Télécharger la sauvegarde de ma clé",
    pending: "En attente de validation par l'accueil", pending_text: "Présentez-vous au guichet avec une pièce d'identité et signez la charte. Votre compte sera ensuite activé.",
    active: "Compte actif", balance: "Solde", available: "Disponible", held: "Réservé pour des trajets",
    op_issue: "Achat de Y'ACA", op_transfer: "Paiement", op_redeem: "Échange contre des euros",
    "op_ride.confirm": "Trajet payé", "op_ride.settle": "Trajet payé automatiquement", "op_ride.resolve": "Litige réglé par l'accueil",
    history: "Historique", date: "Date", what: "Opération", amount: "Montant", after: "Solde après", none: "Rien pour l'instant.",
    chart: "Évolution du solde",
    pay_title: "Payer un commerçant ou une personne", payee: "Numéro de compte du bénéficiaire", memo: "Note (facultatif)",
    pay_button: "Payer", redeem_title: "Échanger des Y'ACA contre des euros (commerçants)", redeem_button: "Échanger",
    origin: "Départ", destination: "Arrivée", pickup: "Prise en charge", dropoff: "Dépose",
    place_point: "Point de rencontre", place_here: "Ma position actuelle", place_coords: "Coordonnées",
    lat: "Latitude", lon: "Longitude", coords_hint: "Trois décimales au plus, par exemple 45.248 et 1.327.",
    once: "Une seule fois", weekly: "Chaque semaine", day: "Jour", time: "Heure", weekdays: "Jours",
    mon: "lundi", tue: "mardi", wed: "mercredi", thu: "jeudi", fri: "vendredi", sat: "samedi", sun: "dimanche",
    seats: "Places", offer_button: "Proposer ce trajet", from_time: "Pas avant", to_time: "Pas après",
    overnight_hint: "Une heure « Pas après » plus tôt que « Pas avant » veut dire le lendemain.",
    request_button: "Chercher un conducteur", matches: "Trajets qui conviennent", live: "Cette liste se met à jour toute seule.",
    rides_news: "Une réservation vient d'arriver ou de changer : la liste est à jour.",
    no_match: "Aucun trajet pour l'instant. Vous serez prévenu dès qu'un trajet convient.",
    departure: "Départ", pickup_at: "Prise en charge vers", detour: "Détour", fare: "Prix", seats_free: "Places libres",
    book: "Réserver", my_offers: "Mes trajets proposés", my_requests: "Mes demandes", my_bookings: "Mes réservations",
    as_driver: "Je conduis", as_passenger: "Je suis passager", status: "État",
    accept: "Accepter", decline: "Refuser", cancel: "Annuler", complete: "Trajet effectué", confirm: "Confirmer et payer",
    dispute: "Signaler un problème", withdraw: "Retirer", see_matches: "Voir les trajets qui conviennent",
    st_requested: "demandée", st_accepted: "acceptée", st_completed: "effectuée", st_disputed: "contestée",
    st_settled: "payée", st_released: "remboursée", st_declined: "refusée", st_cancelled: "annulée", st_expired: "expirée",
    points_title: "Points de rencontre", sketch: "Plan du trajet",
    desk_title: "Guichet (accueil)", desk_key: "Clé du guichet", desk_key_hint: "Le fichier de clé de l'accueil (PEM), par exemple keys/operator-demo.key.",
    desk_import: "Utiliser cette clé", pending_members: "Personnes à valider", approve: "Valider",
    issue_title: "Émettre des Y'ACA contre des euros", member: "Personne", issue_button: "Émettre",
    custodial_title: "Résidents sans internet", custodial_name: "Nom du résident", custodial_button: "Ouvrir un compte géré par l'accueil",
    act_for: "Agir pour", disputes: "Contestations", settle: "Payer le conducteur", release: "Rembourser le passager",
    point_id: "Identifiant (lettres, chiffres, tirets)", point_name: "Nom", add_point: "Ajouter le point de rencontre",
    done: "C'est fait.", error: "Refusé", working: "Un instant…", nothing: "Rien à faire.",
    copy: "Copié.", backup_saved: "Sauvegarde téléchargée.", refused_by_browser: "Ce navigateur ne sait pas faire de clés Ed25519.",
    to_confirm: "À confirmer", memo_dispute: "Ce qui s'est passé", km: "km", when: "Quand",
  },
  en: {
    skip: "Skip to content", language: "Language",
    home: "Home", account: "My account", pay: "Pay", offer: "Offer a ride", request: "Ask for a ride",
    rides: "My rides", points: "Meeting points", desk: "Desk",
    welcome: "Welcome to covoit",
    intro: "The village's carpooling, paid in local currency. Passengers pay drivers per kilometre; drivers spend it in local shops.",
    join: "Join", your_name: "Your name", name_hint: "The name the desk and the people you ride with will see.",
    restore: "I already have a key", key_file: "Key backup file", restore_button: "Restore my key",
    account_id: "Account number", restore_account_hint: "The account number you got when you joined.",
    backup_title: "Keep a copy of your key",
    backup_text: "Your key never leaves this device. Download a copy now and keep it safe: this is the only moment you can.",
    backup_button: "Download my key backup",
    pending: "Waiting for the desk's approval", pending_text: "Come to the desk with an ID and sign the charter. Your account will then be activated.",
    active: "Active account", balance: "Balance", available: "Available", held: "Held for rides",
    op_issue: "Y'ACA bought", op_transfer: "Payment", op_redeem: "Exchanged for euros",
    "op_ride.confirm": "Ride paid", "op_ride.settle": "Ride paid automatically", "op_ride.resolve": "Dispute settled by the desk",
    history: "History", date: "Date", what: "What", amount: "Amount", after: "Balance after", none: "Nothing yet.",
    chart: "Balance over time",
    pay_title: "Pay a shop or a person", payee: "Account number of who you pay", memo: "Note (optional)",
    pay_button: "Pay", redeem_title: "Exchange Y'ACA for euros (shops)", redeem_button: "Exchange",
    origin: "From", destination: "To", pickup: "Pickup", dropoff: "Dropoff",
    place_point: "Meeting point", place_here: "Where I am now", place_coords: "Coordinates",
    lat: "Latitude", lon: "Longitude", coords_hint: "At most three decimals, such as 45.248 and 1.327.",
    once: "Just once", weekly: "Every week", day: "Day", time: "Time", weekdays: "Days",
    mon: "Monday", tue: "Tuesday", wed: "Wednesday", thu: "Thursday", fri: "Friday", sat: "Saturday", sun: "Sunday",
    seats: "Seats", offer_button: "Offer this ride", from_time: "Not before", to_time: "Not after",
    overnight_hint: "A “Not after” earlier than “Not before” means the next day.",
    request_button: "Find a driver", matches: "Rides that fit", live: "This list updates by itself.",
    rides_news: "A booking has just arrived or changed: the list is up to date.",
    no_match: "No ride yet. You will see one here as soon as one fits.",
    departure: "Leaves", pickup_at: "Pickup around", detour: "Detour", fare: "Fare", seats_free: "Free seats",
    book: "Book", my_offers: "Rides I offer", my_requests: "My requests", my_bookings: "My bookings",
    as_driver: "I drive", as_passenger: "I ride", status: "Status",
    accept: "Accept", decline: "Decline", cancel: "Cancel", complete: "Ride done", confirm: "Confirm and pay",
    dispute: "Report a problem", withdraw: "Withdraw", see_matches: "See the rides that fit",
    st_requested: "requested", st_accepted: "accepted", st_completed: "done", st_disputed: "disputed",
    st_settled: "paid", st_released: "refunded", st_declined: "declined", st_cancelled: "cancelled", st_expired: "expired",
    points_title: "Meeting points", sketch: "Map of the ride",
    desk_title: "Desk", desk_key: "Desk key", desk_key_hint: "The desk's key file (PEM), such as keys/operator-demo.key.",
    desk_import: "Use this key", pending_members: "People to approve", approve: "Approve",
    issue_title: "Issue Y'ACA against euros", member: "Person", issue_button: "Issue",
    custodial_title: "Residents without internet", custodial_name: "Resident's name", custodial_button: "Open an account kept by the desk",
    act_for: "Act for", disputes: "Disputes", settle: "Pay the driver", release: "Refund the passenger",
    point_id: "Id (letters, digits, dashes)", point_name: "Name", add_point: "Add the meeting point",
    done: "Done.", error: "Refused", working: "One moment…", nothing: "Nothing to do.",
    copy: "Copied.", backup_saved: "Backup downloaded.", refused_by_browser: "This browser cannot make Ed25519 keys.",
    to_confirm: "To confirm", memo_dispute: "What happened", km: "km", when: "When",
  },
};

let language = localStorage.getItem("covoit.language") || "fr";
const t = (key) => (TEXT[language] && TEXT[language][key]) || TEXT.fr[key] || key;
/** A history line's operation in words; the command's own name when there are none. */
const operation = (type) => (t("op_" + type) === "op_" + type ? type : t("op_" + type));

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// ---------------------------------------------------------------------------------
// Bytes, canonical JSON, signatures.

const encoder = new TextEncoder();
const toBase64 = (bytes) => btoa(Array.from(new Uint8Array(bytes), (b) => String.fromCharCode(b)).join(""));
const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const fromBase64Url = (text) => fromBase64(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));

/** RFC 8785 for covoit's bodies: sorted keys (UTF-16 order), JSON.stringify's escapes. */
function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).filter((key) => value[key] !== undefined).sort();
    return "{" + keys.map((key) => JSON.stringify(key) + ":" + canonical(value[key])).join(",") + "}";
  }
  return JSON.stringify(value);
}

async function signBody(privateKey, publicKey, body) {
  const bodyBytes = encoder.encode(canonical(body));
  const message = new Uint8Array([...encoder.encode(PREFIX), ...bodyBytes]);
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, privateKey, message);
  return { body: toBase64(bodyBytes), key: publicKey, sig: toBase64(signature) };
}

/** A PKCS#8 key in the form WebCrypto takes (v1): the 32-byte seed after 04 22 04 20. */
function pkcs8V1(der) {
  for (let i = 0; i + 36 <= der.length; i++) {
    if (der[i] === 0x04 && der[i + 1] === 0x22 && der[i + 2] === 0x04 && der[i + 3] === 0x20) {
      const prefix = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
      return new Uint8Array([...prefix, ...der.slice(i + 4, i + 36)]);
    }
  }
  throw new Error("not an Ed25519 PKCS#8 key");
}

function pemToDer(pem) {
  const body = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return fromBase64(body);
}

function derToPem(der) {
  const lines = toBase64(der).match(/.{1,64}/g).join("\n");
  return `-----BEGIN PRIVATE KEY-----\n${lines}\n-----END PRIVATE KEY-----\n`;
}

/** Imports a PKCS#8 key: returns a non-extractable signing key and its public key. */
async function importPrivateKey(der) {
  const v1 = pkcs8V1(der);
  const once = await crypto.subtle.importKey("pkcs8", v1, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", once);
  const privateKey = await crypto.subtle.importKey("pkcs8", v1, { name: "Ed25519" }, false, ["sign"]);
  return { privateKey, publicKey: toBase64(fromBase64Url(jwk.x)) };
}

/** A new key: the non-extractable copy to keep, and the PKCS#8 bytes for the backup. */
async function newKey() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const raw = await crypto.subtle.exportKey("raw", pair.publicKey);
  const privateKey = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  return { privateKey, publicKey: toBase64(raw), der };
}

// ---------------------------------------------------------------------------------
// Keys in IndexedDB: "me" (the resident) and "desk" (the operator's key).

function openDatabase() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open("covoit", 1);
    request.onupgradeneeded = () => request.result.createObjectStore("keys", { keyPath: "role" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function loadIdentity(role) {
  const db = await openDatabase();
  return new Promise((resolve, reject) => {
    const request = db.transaction("keys").objectStore("keys").get(role);
    request.onsuccess = () => resolve(request.result || null);
    request.onerror = () => reject(request.error);
  });
}

async function saveIdentity(identity) {
  const db = await openDatabase();
  return new Promise((resolve, reject) => {
    const request = db.transaction("keys", "readwrite").objectStore("keys").put(identity);
    request.onsuccess = () => resolve();
    request.onerror = () => reject(request.error);
  });
}

// ---------------------------------------------------------------------------------
// The service.

class Refused extends Error {
  constructor(error) {
    super(error.message);
    this.code = error.code;
  }
}

async function api(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Refused(body.error);
  return body;
}

let ledgerInfo = null;
async function ledger() {
  if (!ledgerInfo) ledgerInfo = await api("/v1/ledger");
  return ledgerInfo;
}

/** Signs and posts one command for `account` (signed by `signer`, with "by" when the desk acts for someone). */
async function send(signer, account, fields, { by, seq } = {}) {
  const { ledger: ledgerId } = await ledger();
  const next = seq ?? (await api(`/v1/accounts/${account}`)).next_seq;
  const body = { ...fields, ledger: ledgerId, account, seq: next, not_after: new Date(Date.now() + VALID_MS).toISOString() };
  if (by) body.by = by;
  const envelope = await signBody(signer.privateKey, signer.publicKey, body);
  const response = await fetch("/v1/commands", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(envelope) });
  const reply = await response.json();
  if (!response.ok) throw new Refused(reply.error);
  return reply;
}

// ---------------------------------------------------------------------------------
// Showing things.

function say(message, kind = "ok") {
  const status = document.getElementById("status");
  status.innerHTML = `<p class="${kind}">${escape(message)}</p>`;
}

/** Runs an action, then `after` (redrawing the screen), and only then says it is done. */
async function attempt(action, after) {
  say(t("working"));
  try {
    await action();
  } catch (error) {
    say(`${t("error")} : ${error.message}`, "error");
    return false;
  }
  if (after) await after();
  say(t("done"));
  return true;
}

function money(text) {
  const code = ledgerInfo ? ledgerInfo.currency.code : "Y'ACA";
  const shown = language === "fr" ? String(text).replace(".", ",") : String(text);
  return `${shown} ${code}`;
}

function when(text) {
  return new Date(text).toLocaleString(language === "fr" ? "fr-FR" : "en-GB", { dateStyle: "full", timeStyle: "short" });
}

const statusText = (status) => t(`st_${status}`);

/** An SVG sketch of a ride: the route, pickups (green), dropoffs (red), meeting points. */
function sketch(stops, points = [], title = t("sketch")) {
  const all = [...stops, ...points];
  if (all.length === 0) return "";
  const lats = all.map((p) => Number(p.lat));
  const lons = all.map((p) => Number(p.lon));
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const scaleX = Math.cos((midLat * Math.PI) / 180);
  const width = 480, height = 280, pad = 40;
  const spanX = Math.max((Math.max(...lons) - Math.min(...lons)) * scaleX, 0.002);
  const spanY = Math.max(Math.max(...lats) - Math.min(...lats), 0.002);
  const k = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
  const x = (p) => pad + (Number(p.lon) - Math.min(...lons)) * scaleX * k;
  const y = (p) => height - pad - (Number(p.lat) - Math.min(...lats)) * k;
  const route = stops.map((p) => `${x(p).toFixed(1)},${y(p).toFixed(1)}`).join(" ");
  // Stops at the same place share one mark and one label.
  const places = [];
  for (const p of stops) {
    const same = places.find((q) => Math.abs(x(q) - x(p)) < 6 && Math.abs(y(q) - y(p)) < 6);
    if (same) {
      same.label += ` · ${p.label}`;
      if (p.kind === "pickup" || p.kind === "dropoff") same.kind = p.kind;
    } else {
      places.push({ ...p });
    }
  }
  const marks = places.map((p) => {
    const colour = p.kind === "pickup" ? "#1f6b2a" : p.kind === "dropoff" ? "#a11b1b" : "#0b4f8a";
    const shape = p.kind === "pickup" || p.kind === "dropoff"
      ? `<circle cx="${x(p)}" cy="${y(p)}" r="8" fill="${colour}"/>`
      : `<rect x="${x(p) - 8}" y="${y(p) - 8}" width="16" height="16" fill="${colour}"/>`;
    const anchor = x(p) > width / 2 ? "end" : "start";
    const dx = anchor === "end" ? -12 : 12;
    return `${shape}<text x="${x(p) + dx}" y="${y(p) + 5}" font-size="14" text-anchor="${anchor}">${escape(p.label)}</text>`;
  }).join("");
  const landmarks = points.map((p) =>
    `<path d="M${x(p)} ${y(p) - 7}l7 7-7 7-7-7z" fill="#666"/><text x="${x(p) + 10}" y="${y(p) - 6}" font-size="12" fill="#333">${escape(p.label)}</text>`).join("");
  return `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escape(title)}">
    <title>${escape(title)}</title>
    <polyline points="${route}" fill="none" stroke="#0b4f8a" stroke-width="4" stroke-dasharray="8 4"/>${landmarks}${marks}</svg>`;
}

/** An SVG chart of the balance after each posting, oldest first. */
function chart(postings) {
  if (postings.length < 2) return "";
  const series = postings.slice().reverse().map((p) => ({ time: new Date(p.accepted_at).getTime(), value: Number(p.balance_after) }));
  const width = 480, height = 200, pad = 36;
  const times = series.map((s) => s.time), values = series.map((s) => s.value);
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const [v0, v1] = [Math.min(0, ...values), Math.max(...values, 0.01)];
  const x = (time) => pad + ((time - t0) / Math.max(t1 - t0, 1)) * (width - 2 * pad);
  const y = (value) => height - pad - ((value - v0) / Math.max(v1 - v0, 0.01)) * (height - 2 * pad);
  const line = series.map((s) => `${x(s.time).toFixed(1)},${y(s.value).toFixed(1)}`).join(" ");
  const label = `${t("chart")} : ${money(values[0].toFixed(2))} → ${money(values[values.length - 1].toFixed(2))}`;
  return `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escape(label)}">
    <title>${escape(label)}</title>
    <line x1="${pad}" y1="${y(0)}" x2="${width - pad}" y2="${y(0)}" stroke="#999"/>
    <polyline points="${line}" fill="none" stroke="#1f6b2a" stroke-width="3"/>
    <text x="4" y="${y(v1) + 4}" font-size="12">${escape(money(v1.toFixed(2)))}</text>
    <text x="4" y="${y(v0) + 4}" font-size="12">${escape(money(v0.toFixed(2)))}</text></svg>`;
}

// ---------------------------------------------------------------------------------
// Places: a meeting point, where I am, or coordinates.

let meetingPoints = [];

function placeFields(name, legend) {
  const options = meetingPoints.map((p) => `<option value="${escape(p.point)}">${escape(p.name)}</option>`).join("");
  return `<fieldset><legend>${escape(legend)}</legend>
    <label class="choice"><input type="radio" name="${name}-kind" value="point" ${meetingPoints.length ? "checked" : "disabled"}>${t("place_point")}</label>
    <label for="${name}-point">${t("place_point")}</label>
    <select id="${name}-point">${options}</select>
    <label class="choice"><input type="radio" name="${name}-kind" value="here">${t("place_here")}</label>
    <label class="choice"><input type="radio" name="${name}-kind" value="coords" ${meetingPoints.length ? "" : "checked"}>${t("place_coords")}</label>
    <label for="${name}-lat">${t("lat")}</label><input id="${name}-lat" inputmode="decimal" autocomplete="off">
    <label for="${name}-lon">${t("lon")}</label><input id="${name}-lon" inputmode="decimal" autocomplete="off">
    <p class="hint">${t("coords_hint")}</p></fieldset>`;
}

const threeDecimals = (value) => String(Math.round(value * 1000) / 1000);

async function readPlace(name) {
  const kind = document.querySelector(`input[name="${name}-kind"]:checked`)?.value;
  if (kind === "point") return { point: document.getElementById(`${name}-point`).value };
  if (kind === "here") {
    const position = await new Promise((resolve, reject) => navigator.geolocation.getCurrentPosition(resolve, reject));
    return { lat: threeDecimals(position.coords.latitude), lon: threeDecimals(position.coords.longitude) };
  }
  return { lat: document.getElementById(`${name}-lat`).value.trim().replace(",", "."), lon: document.getElementById(`${name}-lon`).value.trim().replace(",", ".") };
}

// ---------------------------------------------------------------------------------
// Screens.

const main = () => document.getElementById("main");
let closeStream = () => {};

const ROUTES = [
  ["", "home", home],
  ["compte", "account", accountScreen],
  ["payer", "pay", payScreen],
  ["proposer", "offer", offerScreen],
  ["demander", "request", requestScreen],
  ["trajets", "rides", ridesScreen],
  ["points", "points", pointsScreen],
  ["guichet", "desk", deskScreen],
];

function renderMenu(route) {
  document.getElementById("menu").innerHTML = ROUTES.map(([path, key]) =>
    `<a href="#/${path}" ${path === route ? 'aria-current="page"' : ""}>${t(key)}</a>`).join("");
}

/** A distance in km, with the reader's decimal mark. */
function km(text) {
  return `${Number(text).toLocaleString(language === "fr" ? "fr-FR" : "en-GB", { maximumFractionDigits: 1 })} ${t("km")}`;
}

async function route() {
  closeStream();
  const [, path = "", argument] = location.hash.split("/");
  const found = ROUTES.find(([name]) => name === path);
  renderMenu(found ? path : null);
  document.documentElement.lang = language;
  document.getElementById("skip-link").textContent = t("skip");
  document.getElementById("language-label").textContent = t("language");
  try {
    meetingPoints = await api("/v1/meeting-points");
    await ledger();
  } catch (error) {
    say(error.message, "error");
  }
  if (path === "demande") return matchesScreen(argument);
  await (found ? found[2] : home)(argument);
  document.getElementById("main").focus();
}

async function home() {
  const me = await loadIdentity("me");
  if (!me) {
    main().innerHTML = `<h1>${t("welcome")}</h1><p>${t("intro")}</p>
      <h2>${t("join")}</h2>
      <form id="join-form"><label for="join-name">${t("your_name")}</label>
      <input id="join-name" required autocomplete="name"><p class="hint">${t("name_hint")}</p>
      <button type="submit" id="join-button">${t("join")}</button></form>
      <h2>${t("restore")}</h2>
      <form id="restore-form"><label for="restore-file">${t("key_file")}</label><input id="restore-file" type="file" accept=".key,.pem,.txt" required>
      <label for="restore-account">${t("account_id")}</label><input id="restore-account" required autocomplete="off">
      <p class="hint">${t("restore_account_hint")}</p>
      <button type="submit">${t("restore_button")}</button></form>`;
    document.getElementById("join-form").onsubmit = (event) => { event.preventDefault(); join(); };
    document.getElementById("restore-form").onsubmit = (event) => { event.preventDefault(); restore(); };
    return;
  }
  const account = await api(`/v1/accounts/${me.account}`);
  const backup = me.backup
    ? `<div class="card"><h2>${t("backup_title")}</h2><p>${t("backup_text")}</p><button id="backup-button">${t("backup_button")}</button></div>`
    : "";
  const state = account.status === "pending"
    ? `<div class="card"><h2 id="account-status">${t("pending")}</h2><p>${t("pending_text")}</p></div>`
    : `<div class="card"><h2 id="account-status">${t("active")}</h2><p>${t("balance")}</p><p class="balance" id="balance">${money(account.balance)}</p></div>`;
  main().innerHTML = `<h1>${escape(account.name)}</h1>${state}
    <p>${t("account_id")} : <span class="mono" id="my-account">${escape(me.account)}</span></p>${backup}`;
  const button = document.getElementById("backup-button");
  if (button) button.onclick = () => downloadBackup(me);
}

async function join() {
  const name = document.getElementById("join-name").value.trim();
  if (!crypto.subtle || !crypto.subtle.generateKey) return say(t("refused_by_browser"), "error");
  await attempt(async () => {
    const key = await newKey();
    const account = crypto.randomUUID();
    await send(key, account, { type: "account.register", name }, { seq: "0" });
    await saveIdentity({ role: "me", account, name, privateKey: key.privateKey, publicKey: key.publicKey, backup: derToPem(key.der) });
  });
  await home();
}

async function restore() {
  await attempt(async () => {
    const pem = await document.getElementById("restore-file").files[0].text();
    const account = document.getElementById("restore-account").value.trim();
    const key = await importPrivateKey(pemToDer(pem));
    const shown = await api(`/v1/accounts/${account}`);
    await saveIdentity({ role: "me", account, name: shown.name, privateKey: key.privateKey, publicKey: key.publicKey });
  });
  await home();
}

function downloadBackup(me) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([me.backup], { type: "application/x-pem-file" }));
  link.download = `covoit-${me.account}.key`;
  link.click();
  // The backup is offered once: forget the exportable copy.
  saveIdentity({ ...me, backup: undefined });
  say(t("backup_saved"));
}

async function needMe() {
  const me = await loadIdentity("me");
  if (!me) location.hash = "#/";
  return me;
}

async function accountScreen() {
  const me = await needMe();
  if (!me) return;
  const account = await api(`/v1/accounts/${me.account}`);
  const page = await api(`/v1/accounts/${me.account}/postings?limit=50`);
  const rows = page.postings.map((p) => {
    const amount = Number(p.amount) < 0 ? `<span class="amount-out">${money(p.amount)}</span>` : `<span class="amount-in">${money(p.amount)}</span>`;
    return `<tr><td>${escape(when(p.accepted_at))}</td><td>${escape(operation(p.type))}${p.memo ? " — " + escape(p.memo) : ""}</td><td>${amount}</td><td>${money(p.balance_after)}</td></tr>`;
  }).join("");
  main().innerHTML = `<h1>${t("account")}</h1>
    <div class="card"><p>${t("balance")}</p><p class="balance" id="balance">${money(account.balance)}</p>
    <p>${t("available")} : <strong id="available">${money(account.available)}</strong> · ${t("held")} : <strong id="held">${money(account.held)}</strong></p></div>
    <h2>${t("chart")}</h2>${chart(page.postings) || `<p>${t("none")}</p>`}
    <h2>${t("history")}</h2>
    ${rows ? `<table><thead><tr><th scope="col">${t("date")}</th><th scope="col">${t("what")}</th><th scope="col">${t("amount")}</th><th scope="col">${t("after")}</th></tr></thead><tbody>${rows}</tbody></table>` : `<p>${t("none")}</p>`}`;
}

async function payScreen() {
  const me = await needMe();
  if (!me) return;
  main().innerHTML = `<h1>${t("pay_title")}</h1>
    <form id="pay-form"><label for="pay-to">${t("payee")}</label><input id="pay-to" required autocomplete="off">
    <label for="pay-amount">${t("amount")}</label><input id="pay-amount" required inputmode="decimal" placeholder="3,50">
    <label for="pay-memo">${t("memo")}</label><input id="pay-memo" maxlength="140">
    <button type="submit">${t("pay_button")}</button></form>
    <h2>${t("redeem_title")}</h2>
    <form id="redeem-form"><label for="redeem-amount">${t("amount")}</label><input id="redeem-amount" required inputmode="decimal">
    <button type="submit">${t("redeem_button")}</button></form>`;
  const value = (id) => document.getElementById(id).value.trim();
  document.getElementById("pay-form").onsubmit = (event) => {
    event.preventDefault();
    const memo = value("pay-memo") || undefined;
    attempt(() => send(me, me.account, { type: "transfer", to: value("pay-to"), amount: value("pay-amount").replace(",", "."), memo }));
  };
  document.getElementById("redeem-form").onsubmit = (event) => {
    event.preventDefault();
    attempt(() => send(me, me.account, { type: "redeem", amount: value("redeem-amount").replace(",", ".") }));
  };
}

const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function tomorrow() {
  const day = new Date(Date.now() + 24 * 3600 * 1000);
  return `${day.getFullYear()}-${String(day.getMonth() + 1).padStart(2, "0")}-${String(day.getDate()).padStart(2, "0")}`;
}

async function offerScreen() {
  const me = await needMe();
  if (!me) return;
  const days = WEEKDAYS.map((day) => `<label class="choice"><input type="checkbox" name="offer-day" value="${day}">${t(day)}</label>`).join("");
  main().innerHTML = `<h1>${t("offer")}</h1><form id="offer-form">
    ${placeFields("origin", t("origin"))}${placeFields("destination", t("destination"))}
    <fieldset><legend>${t("when")}</legend>
      <label class="choice"><input type="radio" name="offer-kind" value="once" checked>${t("once")}</label>
      <label for="offer-date">${t("day")}</label><input id="offer-date" type="date" value="${tomorrow()}">
      <label class="choice"><input type="radio" name="offer-kind" value="weekly">${t("weekly")}</label>
      <fieldset><legend>${t("weekdays")}</legend>${days}</fieldset>
      <label for="offer-time">${t("time")}</label><input id="offer-time" type="time" value="07:30" required>
    </fieldset>
    <label for="offer-seats">${t("seats")}</label><input id="offer-seats" type="number" min="1" max="8" value="3" required>
    <button type="submit">${t("offer_button")}</button></form>`;
  document.getElementById("offer-form").onsubmit = async (event) => {
    event.preventDefault();
    const ok = await attempt(async () => {
      const fields = {
        type: "ride.offer",
        offer: crypto.randomUUID(),
        origin: await readPlace("origin"),
        destination: await readPlace("destination"),
        seats: Number(document.getElementById("offer-seats").value),
      };
      const time = document.getElementById("offer-time").value;
      if (document.querySelector('input[name="offer-kind"]:checked').value === "once") {
        fields.departure = new Date(`${document.getElementById("offer-date").value}T${time}`).toISOString();
      } else {
        fields.weekdays = [...document.querySelectorAll('input[name="offer-day"]:checked')].map((box) => box.value).join(",");
        fields.time = time;
      }
      await send(me, me.account, fields);
    });
    if (ok) location.hash = "#/trajets";
  };
}

async function requestForm(account, signer, by) {
  main().innerHTML = `<h1>${t("request")}</h1><form id="request-form">
    ${placeFields("pickup", t("pickup"))}${placeFields("dropoff", t("dropoff"))}
    <label for="request-date">${t("day")}</label><input id="request-date" type="date" value="${tomorrow()}" required>
    <label for="request-from">${t("from_time")}</label><input id="request-from" type="time" value="07:15" required>
    <label for="request-to">${t("to_time")}</label><input id="request-to" type="time" value="08:00" required aria-describedby="request-to-hint">
    <p class="hint" id="request-to-hint">${t("overnight_hint")}</p>
    <label for="request-seats">${t("seats")}</label><input id="request-seats" type="number" min="1" max="8" value="1" required>
    <button type="submit">${t("request_button")}</button></form>`;
  document.getElementById("request-form").onsubmit = async (event) => {
    event.preventDefault();
    const request = crypto.randomUUID();
    const day = document.getElementById("request-date").value;
    const ok = await attempt(async () => {
      await send(signer, account, {
        type: "ride.request",
        request,
        pickup: await readPlace("pickup"),
        dropoff: await readPlace("dropoff"),
        ...requestWindow(day, document.getElementById("request-from").value, document.getElementById("request-to").value),
        seats: Number(document.getElementById("request-seats").value),
      }, { by });
    });
    if (ok) location.hash = by ? `#/demande/${request}/${account}` : `#/demande/${request}`;
  };
}

// The window a resident typed: on their day, local time; a "not after" earlier
// than "not before" is the next morning (a window across midnight).
function requestWindow(day, from, to) {
  const earliest = new Date(`${day}T${from}`);
  const latest = new Date(`${day}T${to}`);
  if (latest < earliest) latest.setDate(latest.getDate() + 1);
  return { earliest: earliest.toISOString(), latest: latest.toISOString() };
}

async function requestScreen() {
  const me = await needMe();
  if (me) await requestForm(me.account, me);
}

function matchItem(found, request) {
  const stops = [
    { ...found.origin, kind: "origin", label: t("origin") },
    { ...request.pickup, kind: "pickup", label: t("pickup") },
    { ...request.dropoff, kind: "dropoff", label: t("dropoff") },
    { ...found.destination, kind: "destination", label: t("destination") },
  ];
  return `<li class="card"><p><strong>${t("departure")}</strong> : ${escape(when(found.departure))}<br>
    <strong>${t("pickup_at")}</strong> : ${escape(when(found.pickup_at))}<br>
    <strong>${t("detour")}</strong> : ${escape(km(found.added_km))} · <strong>${t("fare")}</strong> : ${money(found.fare)} · <strong>${t("seats_free")}</strong> : ${found.seats_free}</p>
    ${sketch(stops)}
    <button class="book" data-offer="${escape(found.offer)}" data-date="${escape(found.date)}">${t("book")}</button></li>`;
}

/** A request's matches, kept up to date by the request's event stream. */
async function matchesScreen(requestId) {
  const [, , , actingFor] = location.hash.split("/");
  const desk = actingFor ? await loadIdentity("desk") : null;
  const me = actingFor ? null : await needMe();
  const signer = desk || me;
  const account = actingFor || me?.account;
  if (!signer) return;
  const request = await api(`/v1/requests/${requestId}`);
  main().innerHTML = `<h1>${t("matches")}</h1><p>${t("live")}</p><ul class="matches" id="matches"></ul>`;
  const show = (matches) => {
    const list = document.getElementById("matches");
    if (!list) return;
    list.innerHTML = matches.length ? matches.map((m) => matchItem(m, request)).join("") : `<li>${t("no_match")}</li>`;
    for (const button of list.querySelectorAll("button.book")) {
      button.onclick = async () => {
        const ok = await attempt(() => send(signer, account, { type: "ride.book", booking: crypto.randomUUID(), offer: button.dataset.offer, request: requestId, date: button.dataset.date }, { by: desk ? "operator" : undefined }));
        if (ok) location.hash = desk ? "#/guichet" : "#/trajets";
      };
    }
  };
  let current = (await api(`/v1/requests/${requestId}/matches`)).matches;
  show(current);
  const stream = new EventSource(`/v1/requests/${requestId}/events`);
  stream.addEventListener("matches", (event) => { current = JSON.parse(event.data).matches; show(current); });
  stream.addEventListener("match", async () => { current = (await api(`/v1/requests/${requestId}/matches`)).matches; show(current); });
  closeStream = () => stream.close();
}

function bookingActions(booking, myAccount) {
  const driving = booking.driver === myAccount;
  const actions = [];
  if (driving && booking.status === "requested") actions.push(["ride.accept", "accept"], ["ride.decline", "decline"]);
  if (["requested", "accepted"].includes(booking.status)) actions.push(["ride.cancel", "cancel"]);
  if (driving && booking.status === "accepted") actions.push(["ride.complete", "complete"]);
  if (!driving && booking.status === "completed") actions.push(["ride.confirm", "confirm"], ["ride.dispute", "dispute"]);
  return actions.map(([type, label]) =>
    `<button class="${type === "ride.decline" || type === "ride.cancel" || type === "ride.dispute" ? "secondary" : ""}" data-type="${type}" data-booking="${escape(booking.booking)}">${t(label)}</button>`).join("");
}

async function ridesScreen() {
  closeStream();
  const me = await needMe();
  if (!me) return;
  const rides = await api(`/v1/accounts/${me.account}/rides`);
  const bookings = rides.bookings.map((b) => `<li class="card booking" data-booking="${escape(b.booking)}" data-status="${escape(b.status)}">
      <p><strong>${b.driver === me.account ? t("as_driver") : t("as_passenger")}</strong> · ${escape(when(b.pickup_at))}<br>
      ${t("status")} : <span class="status-badge">${escape(statusText(b.status))}</span> · ${t("fare")} : ${money(b.fare)} · ${escape(km(b.distance_km))}</p>
      ${bookingActions(b, me.account)}</li>`).join("");
  const offers = rides.offers.map((o) => {
    const stops = [{ ...o.origin, kind: "origin", label: t("origin") }, { ...o.destination, kind: "destination", label: t("destination") }];
    const schedule = o.schedule.departure ? escape(when(o.schedule.departure)) : `${escape(o.schedule.weekdays)} · ${escape(o.schedule.time)}`;
    return `<li class="card"><p>${schedule} · ${t("seats")} : ${o.seats} · ${escape(km(o.route_km))}${o.withdrawn ? " · " + t("st_cancelled") : ""}</p>
      ${sketch(stops, meetingPoints.map((p) => ({ ...p, label: p.name })))}
      ${o.withdrawn ? "" : `<button class="secondary withdraw-offer" data-offer="${escape(o.offer)}">${t("withdraw")}</button>`}</li>`;
  }).join("");
  const requests = rides.requests.map((r) => `<li class="card"><p>${escape(when(r.earliest))} – ${escape(when(r.latest))} · ${escape(km(r.distance_km))}</p>
      ${r.withdrawn ? "" : `<a class="button secondary" href="#/demande/${escape(r.request)}">${t("see_matches")}</a>`}</li>`).join("");
  main().innerHTML = `<h1>${t("rides")}</h1><p>${t("live")}</p>
    <h2>${t("my_bookings")}</h2><ul class="rides" id="bookings">${bookings || `<li>${t("none")}</li>`}</ul>
    <h2>${t("my_offers")}</h2><ul class="rides">${offers || `<li>${t("none")}</li>`}</ul>
    <h2>${t("my_requests")}</h2><ul class="rides">${requests || `<li>${t("none")}</li>`}</ul>`;
  for (const button of main().querySelectorAll("button[data-type]")) {
    button.onclick = async () => {
      const fields = { type: button.dataset.type, booking: button.dataset.booking };
      if (fields.type === "ride.dispute") fields.memo = prompt(t("memo_dispute")) || undefined;
      await attempt(() => send(me, me.account, fields), () => ridesScreen());
    };
  }
  for (const button of main().querySelectorAll("button.withdraw-offer")) {
    button.onclick = async () => {
      await attempt(() => send(me, me.account, { type: "ride.cancel", offer: button.dataset.offer }), () => ridesScreen());
    };
  }
  // A booking made or changed by someone else (a passenger booking the driver's ride,
  // the driver accepting) redraws this screen: the member's live stream.
  if (!location.hash.startsWith("#/trajets")) return;
  const stream = new EventSource(`/v1/accounts/${me.account}/events`);
  const shown = (change) =>
    main().querySelector(`li.booking[data-booking="${CSS.escape(change.booking)}"]`)?.dataset.status === change.status;
  stream.addEventListener("booking", (event) => {
    const change = JSON.parse(event.data);
    // A change made here is redrawn by its own action: give that a moment first.
    setTimeout(async () => {
      if (stream.readyState === EventSource.CLOSED || shown(change)) return;
      await ridesScreen();
      say(t("rides_news"));
    }, 300);
  });
  stream.addEventListener("reload", () => ridesScreen());
  closeStream = () => stream.close();
}

async function pointsScreen() {
  const rows = meetingPoints.map((p) => `<tr><td>${escape(p.name)}</td><td class="mono">${escape(p.lat)}, ${escape(p.lon)}</td></tr>`).join("");
  main().innerHTML = `<h1>${t("points_title")}</h1>
    ${sketch([], meetingPoints.map((p) => ({ ...p, label: p.name })), t("points_title"))}
    ${rows ? `<table><thead><tr><th scope="col">${t("point_name")}</th><th scope="col">${t("lat")}, ${t("lon")}</th></tr></thead><tbody>${rows}</tbody></table>` : `<p>${t("none")}</p>`}`;
}

// ---------------------------------------------------------------------------------
// The desk.

async function deskScreen(argument) {
  const desk = await loadIdentity("desk");
  if (!desk) {
    main().innerHTML = `<h1>${t("desk_title")}</h1><form id="desk-form"><label for="desk-file">${t("desk_key")}</label>
      <input id="desk-file" type="file" accept=".key,.pem,.txt" required><p class="hint">${t("desk_key_hint")}</p>
      <button type="submit">${t("desk_import")}</button></form>`;
    document.getElementById("desk-form").onsubmit = async (event) => {
      event.preventDefault();
      const ok = await attempt(async () => {
        const key = await importPrivateKey(pemToDer(await document.getElementById("desk-file").files[0].text()));
        if (key.publicKey !== (await ledger()).operator_key) throw new Error(t("desk_key_hint"));
        await saveIdentity({ role: "desk", account: "operator", privateKey: key.privateKey, publicKey: key.publicKey });
      });
      if (ok) await deskScreen();
    };
    return;
  }
  if (argument === "demande") return requestForm(location.hash.split("/")[3], desk, "operator");
  const pending = (await api("/v1/accounts?status=pending")).accounts;
  const active = (await api("/v1/accounts?status=active")).accounts;
  const custodial = active.filter((a) => a.custodial);
  const disputes = (await api("/v1/bookings?status=disputed")).bookings;
  const options = active.map((a) => `<option value="${escape(a.account)}">${escape(a.name)}</option>`).join("");
  const toConfirm = [];
  for (const resident of custodial) {
    const rides = await api(`/v1/accounts/${resident.account}/rides`);
    for (const b of rides.bookings.filter((b) => b.passenger === resident.account && b.status === "completed")) toConfirm.push([resident, b]);
  }
  main().innerHTML = `<h1>${t("desk_title")}</h1>
    <h2>${t("pending_members")}</h2>${pending.length ? `<ul>${pending.map((a) => `<li>${escape(a.name)} <span class="mono">${escape(a.account)}</span>
      <button class="approve" data-account="${escape(a.account)}">${t("approve")}</button></li>`).join("")}</ul>` : `<p>${t("nothing")}</p>`}
    <h2>${t("issue_title")}</h2><form id="issue-form"><label for="issue-to">${t("member")}</label><select id="issue-to">${options}</select>
      <label for="issue-amount">${t("amount")}</label><input id="issue-amount" required inputmode="decimal">
      <label for="issue-memo">${t("memo")}</label><input id="issue-memo" maxlength="140">
      <button type="submit">${t("issue_button")}</button></form>
    <h2>${t("custodial_title")}</h2><form id="custodial-form"><label for="custodial-name">${t("custodial_name")}</label><input id="custodial-name" required>
      <button type="submit">${t("custodial_button")}</button></form>
      <ul>${custodial.map((a) => `<li>${escape(a.name)} · ${money(a.balance)} <a class="button secondary" href="#/guichet/demande/${escape(a.account)}">${t("act_for")} ${escape(a.name)} : ${t("request")}</a></li>`).join("")}</ul>
      ${toConfirm.length ? `<h3>${t("to_confirm")}</h3><ul>${toConfirm.map(([a, b]) => `<li>${escape(a.name)} · ${escape(when(b.pickup_at))} · ${money(b.fare)}
        <button class="custodial-confirm" data-account="${escape(a.account)}" data-booking="${escape(b.booking)}">${t("confirm")}</button></li>`).join("")}</ul>` : ""}
    <h2>${t("disputes")}</h2>${disputes.length ? `<ul>${disputes.map((b) => `<li class="card">${escape(when(b.pickup_at))} · ${money(b.fare)}
      <button class="resolve" data-booking="${escape(b.booking)}" data-outcome="settle">${t("settle")}</button>
      <button class="resolve secondary" data-booking="${escape(b.booking)}" data-outcome="release">${t("release")}</button></li>`).join("")}</ul>` : `<p>${t("nothing")}</p>`}
    <h2>${t("points_title")}</h2><form id="point-form"><label for="point-id">${t("point_id")}</label><input id="point-id" required pattern="[a-z0-9-]{1,32}">
      <label for="point-name">${t("point_name")}</label><input id="point-name" required>
      <label for="point-lat">${t("lat")}</label><input id="point-lat" required inputmode="decimal">
      <label for="point-lon">${t("lon")}</label><input id="point-lon" required inputmode="decimal">
      <button type="submit">${t("add_point")}</button></form>`;
  const value = (id) => document.getElementById(id).value.trim();
  const act = (fields, account = "operator", by) => attempt(() => send(desk, account, fields, { by }), () => deskScreen());
  for (const button of main().querySelectorAll("button.approve")) button.onclick = () => act({ type: "account.approve", target: button.dataset.account });
  for (const button of main().querySelectorAll("button.resolve")) button.onclick = () => act({ type: "ride.resolve", booking: button.dataset.booking, outcome: button.dataset.outcome });
  for (const button of main().querySelectorAll("button.custodial-confirm")) button.onclick = () => act({ type: "ride.confirm", booking: button.dataset.booking }, button.dataset.account, "operator");
  document.getElementById("issue-form").onsubmit = (event) => { event.preventDefault(); act({ type: "issue", to: value("issue-to"), amount: value("issue-amount").replace(",", "."), memo: value("issue-memo") || undefined }); };
  document.getElementById("custodial-form").onsubmit = (event) => { event.preventDefault(); act({ type: "account.custodial", target: crypto.randomUUID(), name: value("custodial-name") }); };
  document.getElementById("point-form").onsubmit = (event) => { event.preventDefault(); act({ type: "place.set", point: value("point-id"), name: value("point-name"), lat: value("point-lat"), lon: value("point-lon") }); };
}

// ---------------------------------------------------------------------------------

document.getElementById("language").value = language;
document.getElementById("language").onchange = (event) => {
  language = event.target.value;
  localStorage.setItem("covoit.language", language);
  route();
};
window.addEventListener("hashchange", route);
route();
