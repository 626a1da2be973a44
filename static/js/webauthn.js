// Security keys and passkeys: runs the WebAuthn ceremonies for the forms marked
// `data-webauthn-form="create|get"`. A button press asks the server for options
// (POST `data-options` with the form's CSRF token), converts their base64url
// fields to bytes, calls navigator.credentials.create/get, puts the result as
// JSON (base64url again) into the form's `credential` field and submits the form.
// Without WebAuthn the boxes stay hidden and `[data-webauthn-unsupported]` shows.
(function () {
  "use strict";

  function toBytes(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeCredentials(list) {
    return (list || []).map(function (c) {
      var copy = Object.assign({}, c);
      copy.id = toBytes(c.id);
      return copy;
    });
  }

  function creationOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = toBytes(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: toBytes(pk.user.id) });
    pk.excludeCredentials = decodeCredentials(pk.excludeCredentials);
    return { publicKey: pk };
  }

  function requestOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = toBytes(pk.challenge);
    pk.allowCredentials = decodeCredentials(pk.allowCredentials);
    return { publicKey: pk };
  }

  function encode(credential) {
    var r = credential.response;
    var response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      if (typeof r.getTransports === "function") { response.transports = r.getTransports(); }
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
    }
    return JSON.stringify({
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: response,
      extensions: typeof credential.getClientExtensionResults === "function"
        ? credential.getClientExtensionResults() : {}
    });
  }

  function explain(error) {
    if (error && error.name === "NotAllowedError") {
      return "Nothing was confirmed (cancelled or timed out). Press the button to try again.";
    }
    if (error && error.name === "InvalidStateError") {
      return "This security key or passkey is already registered.";
    }
    if (error && error.name === "SecurityError") {
      return "This page's address cannot use passkeys.";
    }
    return (error && error.message) || "Something went wrong. Reload the page and try again.";
  }

  function setUp(form) {
    var box = form.closest("[data-webauthn]") || form;
    var mode = form.getAttribute("data-webauthn-form");
    var button = form.querySelector("[data-webauthn-start]");
    var status = form.querySelector("[data-webauthn-status]");
    box.hidden = false;
    button.addEventListener("click", function () {
      var name = form.querySelector("input[name=name]");
      if (name && !name.reportValidity()) { return; }
      button.disabled = true;
      status.textContent = mode === "create"
        ? "Follow your browser's prompt to create the passkey…"
        : "Follow your browser's prompt to use your security key or passkey…";
      var body = new URLSearchParams();
      body.set("csrf_token", form.querySelector("input[name=csrf_token]").value);
      fetch(form.getAttribute("data-options"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "application/json" },
        body: body
      }).then(function (response) {
        return response.json().then(function (json) {
          if (!response.ok) { throw new Error(json.detail || "The server refused the request."); }
          return json;
        });
      }).then(function (options) {
        return mode === "create"
          ? navigator.credentials.create(creationOptions(options))
          : navigator.credentials.get(requestOptions(options));
      }).then(function (credential) {
        form.querySelector("input[name=credential]").value = encode(credential);
        status.textContent = "Checking…";
        form.submit();
      }).catch(function (error) {
        status.textContent = explain(error);
        button.disabled = false;
      });
    });
  }

  function start() {
    var forms = document.querySelectorAll("form[data-webauthn-form]");
    var supported = window.PublicKeyCredential && navigator.credentials && window.fetch;
    if (!supported) {
      document.querySelectorAll("[data-webauthn-unsupported]").forEach(function (el) { el.hidden = false; });
      return;
    }
    forms.forEach(setUp);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
