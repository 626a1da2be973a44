// Session expiry warning. The server renders #session-timer (hidden) with the
// seconds left; this script counts down, reveals the banner when the warning
// window starts, extends the session in place when "Stay signed in" is pressed,
// and reloads the page when the time is up (the server then shows the
// "session expired" sign-in page and brings the person back here afterwards).
// Without JavaScript the page works; the banner simply has no countdown.
(function () {
  "use strict";
  var banner = document.getElementById("session-timer");
  if (!banner) return;
  var countdowns = banner.querySelectorAll(".session-countdown");
  var form = banner.querySelector("form.session-extend");
  var warn = parseInt(banner.getAttribute("data-warn"), 10);
  var deadline = 0;
  var timer = null;

  function start(remaining) {
    deadline = Date.now() + remaining * 1000;
    if (timer) clearInterval(timer);
    timer = setInterval(tick, 1000);
    tick();
  }

  function format(seconds) {
    var m = Math.floor(seconds / 60);
    var s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function tick() {
    var left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    for (var i = 0; i < countdowns.length; i++) countdowns[i].textContent = format(left);
    if (left <= warn) {
      if (banner.hidden) {
        banner.hidden = false;
        // Move focus to the button only when the person is not typing somewhere.
        var button = banner.querySelector("button");
        var active = document.activeElement;
        if (button && (!active || active === document.body)) button.focus({ preventScroll: true });
      }
    } else if (!banner.hidden) {
      banner.hidden = true;
    }
    if (left === 0) {
      clearInterval(timer);
      window.location.reload();
    }
  }

  if (form && window.fetch) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        redirect: "manual"
      }).then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok || type.indexOf("application/json") !== 0) throw new Error("expired");
        return response.json();
      }).then(function (body) {
        banner.hidden = true;
        start(body.remaining);
      }).catch(function () {
        window.location.reload();
      });
    });
  }

  start(parseInt(banner.getAttribute("data-remaining"), 10));
})();
