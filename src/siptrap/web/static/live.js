// The overview, live: every few seconds fetch the server-rendered part again and swap it
// in. Only our own server's HTML (escaped there) is used; nothing else is fetched.
"use strict";
(function () {
  const box = document.getElementById("live");
  if (!box) { return; }
  const source = box.dataset.source;
  async function refresh() {
    try {
      const reply = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (reply.ok) {
        const doc = new DOMParser().parseFromString(await reply.text(), "text/html");
        box.replaceChildren(...doc.body.childNodes);
      }
    } catch (err) {
      // the honeypot may be restarting: try again at the next tick
    }
  }
  setInterval(refresh, 3000);
}());
