// The Nubis console page: noVNC's RFB client on /v1/console/websocket.
// The link is /console/<server id>#token=<token>: the token is in the
// fragment, so it never reaches a server log or a Referer header. It is
// removed from the address bar at once, and offered to the websocket as the
// subprotocol "nubis-console.<token>". It works once, for a minute.
import RFB from '/static/novnc/core/rfb.js';

const status = document.getElementById('status');
const screen = document.getElementById('screen');
const cad = document.getElementById('ctrl-alt-del');
const scale = document.getElementById('scale');

const token = new URLSearchParams(window.location.hash.slice(1)).get('token');
// Keep the token out of the history and of anything copied from the address bar.
history.replaceState(null, '', window.location.pathname + window.location.search);

function say(text) {
  status.textContent = text;
}

if (!token) {
  say('This console link has no token. Open the console again from the server page, or run "nubis server console NAME".');
} else {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${window.location.host}/v1/console/websocket`;
  let connected = false;
  const rfb = new RFB(screen, url, { wsProtocols: ['binary', 'nubis-console.' + token] });
  rfb.scaleViewport = scale.checked;
  rfb.focusOnClick = true;
  rfb.addEventListener('connect', () => {
    connected = true;
    say('Connected. Click the screen (or tab to it) to type.');
    cad.disabled = false;
    rfb.focus();
  });
  rfb.addEventListener('disconnect', () => {
    cad.disabled = true;
    say(connected
      ? 'The console session ended (the server stopped or was deleted, or the connection dropped). Open the console again for a new link.'
      : 'Could not open the console: the link expired or was already used, or the server is not running. Open the console again for a new link.');
  });
  rfb.addEventListener('desktopname', (e) => {
    document.title = `${e.detail.name} - console - Nubis`;
  });
  cad.addEventListener('click', () => {
    rfb.sendCtrlAltDel();
    rfb.focus();
  });
  scale.addEventListener('change', () => {
    rfb.scaleViewport = scale.checked;
  });
}
