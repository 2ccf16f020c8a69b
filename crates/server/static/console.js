// The live console: one WebSocket to the dashboard, which relays it to the rig's
// lab host. Binary frames are the console's bytes; text frames are the session's
// state as JSON ({"state": "opening" | "open" | "closed", "message": "..."}).
(function () {
  "use strict";
  var screen = document.getElementById("console-screen");
  var status = document.getElementById("console-status");
  var form = document.getElementById("console-line");
  var input = document.getElementById("console-input");
  if (!screen || !status) return;
  var scheme = location.protocol === "https:" ? "wss:" : "ws:";
  var socket = new WebSocket(scheme + "//" + location.host + screen.dataset.socket);
  socket.binaryType = "arraybuffer";
  var decoder = new TextDecoder();
  var encoder = new TextEncoder();
  var MAX_SHOWN = 200000;

  function show(state, message) {
    status.dataset.state = state;
    status.textContent = message;
    if (state === "closed") {
      screen.dataset.closed = "true";
      if (input) input.disabled = true;
    }
  }

  // What a terminal would show, roughly: escape sequences dropped, backspace erases,
  // a carriage return before a newline ignored.
  function append(text) {
    text = text.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, "").replace(/\x1b[()][0-9A-Za-z]/g, "").replace(/\r\n/g, "\n");
    var shown = screen.textContent;
    for (var i = 0; i < text.length; i++) {
      var c = text[i];
      if (c === "\b") shown = shown.slice(0, -1);
      else if (c === "\r" || c === "\x07") continue;
      else shown += c;
    }
    if (shown.length > MAX_SHOWN) shown = shown.slice(shown.length - MAX_SHOWN);
    screen.textContent = shown;
    screen.scrollTop = screen.scrollHeight;
  }

  socket.onmessage = function (event) {
    if (typeof event.data === "string") {
      var m = JSON.parse(event.data);
      show(m.state, m.message);
    } else {
      append(decoder.decode(event.data, { stream: true }));
    }
  };
  socket.onclose = function () {
    if (status.dataset.state !== "closed") show("closed", "The console is closed (the connection to the dashboard ended).");
  };

  function send(text) {
    if (socket.readyState === WebSocket.OPEN && status.dataset.state === "open") socket.send(encoder.encode(text));
  }

  var KEYS = { Enter: "\r", Backspace: "\x7f", Tab: "\t", Escape: "\x1b", ArrowUp: "\x1b[A", ArrowDown: "\x1b[B", ArrowRight: "\x1b[C", ArrowLeft: "\x1b[D" };
  screen.addEventListener("keydown", function (event) {
    var bytes = null;
    if (event.ctrlKey && event.key.length === 1) {
      var code = event.key.toUpperCase().charCodeAt(0);
      if (code >= 64 && code < 96) bytes = String.fromCharCode(code - 64);
    } else if (KEYS[event.key]) {
      bytes = KEYS[event.key];
    } else if (event.key.length === 1 && !event.metaKey && !event.altKey) {
      bytes = event.key;
    }
    if (bytes !== null) {
      send(bytes);
      event.preventDefault();
    }
  });
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      send(input.value + "\r");
      input.value = "";
    });
  }
})();
