// Nubis portal: the little JavaScript it needs. Everything works without it
// except live list updates and image uploads.
"use strict";

function csrfToken() {
  var m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : "";
}

function el(tag, attrs, children) {
  var e = document.createElement(tag);
  Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
  (children || []).forEach(function (c) {
    e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  });
  return e;
}

function badge(status) {
  return el("span", { "class": "badge s-" + status }, [status]);
}

function addresses(s) {
  var ips = (s.addresses || []).map(function (a) { return a.ip; });
  return ips.length ? ips.join(", ") : "\u2014";
}

function serverRow(s) {
  return el("tr", { "data-id": s.id }, [
    el("td", { "data-label": "Name" }, [el("a", { href: "/servers/" + s.id }, [s.name])]),
    el("td", { "data-label": "Status", "data-field": "status" }, [badge(s.status)]),
    el("td", { "data-label": "Address", "data-field": "address" }, [addresses(s)]),
    el("td", { "data-label": "DNS name", "data-field": "dns" }, [s.dns_name || "\u2014"]),
    el("td", { "data-label": "Size" }, [s.vcpus + " vCPU \u00b7 " + s.memory_mib + " MiB \u00b7 " + s.disk_gib + " GiB"]),
  ]);
}

// The instances list: poll the portal's JSON endpoint and patch the rows.
function pollServers(table) {
  var url = table.getAttribute("data-poll");
  var tbody = table.querySelector("tbody");
  function patch(servers) {
    var seen = {};
    servers.forEach(function (s) {
      seen[s.id] = true;
      var row = tbody.querySelector('tr[data-id="' + s.id + '"]');
      if (!row) { tbody.appendChild(serverRow(s)); return; }
      var st = row.querySelector('[data-field="status"]');
      if (st.textContent !== s.status) { st.replaceChildren(badge(s.status)); }
      var ad = row.querySelector('[data-field="address"]');
      if (ad.textContent !== addresses(s)) { ad.textContent = addresses(s); }
      var dns = row.querySelector('[data-field="dns"]');
      if (dns.textContent !== (s.dns_name || "\u2014")) { dns.textContent = s.dns_name || "\u2014"; }
    });
    Array.prototype.forEach.call(tbody.querySelectorAll("tr[data-id]"), function (row) {
      if (!seen[row.getAttribute("data-id")]) { row.remove(); }
    });
    table.hidden = servers.length === 0;
    var empty = document.querySelector("p.empty");
    if (empty) { empty.hidden = servers.length !== 0; }
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (servers) { if (Array.isArray(servers)) { patch(servers); } })
      .catch(function () {})
      .then(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
}

// Image upload: create the record, then PUT the file with a progress bar.
function uploadForm(form) {
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var file = form.querySelector('input[type="file"]').files[0];
    var box = form.querySelector(".progress-box");
    var bar = form.querySelector("progress");
    var label = document.getElementById("img-progress-text");
    var err = document.getElementById("upload-error");
    var button = form.querySelector('button[type="submit"]');
    function fail(msg) {
      err.textContent = msg; err.hidden = false; button.disabled = false;
    }
    err.hidden = true; button.disabled = true;
    var data = new URLSearchParams(new FormData(form));
    data.delete("file");
    fetch(form.action, {
      method: "POST", credentials: "same-origin", body: data,
      headers: { Accept: "application/json" },
    }).then(function (r) { return r.json().then(function (b) { return [r.ok, b]; }); })
      .then(function (res) {
        if (!res[0]) { fail("The image was not created: " + ((res[1].error || {}).message || "error")); return; }
        var xhr = new XMLHttpRequest();
        xhr.open("PUT", "/images/" + encodeURIComponent(res[1].id) + "/file");
        xhr.setRequestHeader("X-CSRF-Token", csrfToken());
        xhr.setRequestHeader("Content-Type", "application/octet-stream");
        box.hidden = false;
        xhr.upload.onprogress = function (e) {
          if (e.lengthComputable) {
            var pct = Math.round(100 * e.loaded / e.total);
            bar.value = pct; bar.textContent = pct + "%"; label.textContent = pct + "%";
          }
        };
        xhr.onload = function () {
          if (xhr.status >= 200 && xhr.status < 300) {
            bar.value = 100; label.textContent = "100% \u2014 done";
            window.location.assign("/images?uploaded=1");
          } else {
            var msg = "error " + xhr.status;
            try { msg = JSON.parse(xhr.responseText).error.message; } catch (e) { /* keep */ }
            fail("The upload failed: " + msg);
          }
        };
        xhr.onerror = function () { fail("The upload failed: the connection was lost."); };
        xhr.send(file);
      })
      .catch(function () { fail("The image was not created: the connection was lost."); });
  });
}

// Launch form: the custom size fields only matter with "Custom size".
function launchForm(form) {
  var flavor = form.querySelector("#flavor");
  var custom = form.querySelector("#custom-size");
  if (!flavor || !custom) { return; }
  function sync() {
    var on = flavor.value === "custom";
    Array.prototype.forEach.call(custom.querySelectorAll("input"), function (i) {
      i.disabled = !on; i.required = on;
    });
  }
  flavor.addEventListener("change", sync);
  sync();
}

document.addEventListener("DOMContentLoaded", function () {
  var table = document.querySelector("table[data-poll]");
  if (table) { pollServers(table); }
  var up = document.querySelector("form[data-upload]");
  if (up) { uploadForm(up); }
  var launch = document.getElementById("launch");
  if (launch) { launchForm(launch); }
});
