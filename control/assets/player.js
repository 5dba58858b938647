/*! rts player.js: WebRTC (WHEP, RTS, SRS signaling) with reconnect, LL-HLS fallback,
 * channel switch and live figures. Served by rts at /player.js; no other resources
 * (hls.js 1.6.15, Apache-2.0, is loaded from the same server's /player/hls.min.js only
 * when LL-HLS is used).
 *
 *   (include https://edge.example.com/player.js with a script tag, then)
 *   const p = rts.play(videoElement, 'https://edge.example.com/live/room1?auth_key=...', { signaling: 'whep' });
 *   p.addEventListener('state', (e) => console.log(e.detail.state, e.detail.message));
 *   p.addEventListener('stats', (e) => console.log(e.detail.latencyMs));
 *   await p.switchTo('live/room2');
 *
 * Options: signaling 'whep' (default) | 'rts' | 'srs'; protocol 'webrtc' (default) |
 * 'hls'; authKey (else the URL's auth_key); media (LL-HLS base URL, default the
 * server's media listener); reconnect (default true); fallback (to LL-HLS when WebRTC
 * cannot connect, default true); connectTimeoutMs (ICE+DTLS, default 5000);
 * audio (an <audio> element; default one is created, hidden); statsIntervalMs (1000).
 * Events (CustomEvent, detail): 'state' {state, message, reason, error}, 'stats' (what
 * stats() returns), 'switch' {stream, httpMs, firstFrameMs}, 'fallback' {reason},
 * 'reconnect' {attempt, delayMs, why}, 'audio' {muted, blocked}.
 */
(function () {
  'use strict';
  if (globalThis.rtsPlayer) return; // loaded twice

  const NTP_UNIX_MS = 2208988800000; // 1900 -> 1970
  const BACKOFF_MS = [0, 500, 1000, 2000, 4000, 8000];
  const DISCONNECTED_GRACE_MS = 2000; // ICE "disconnected" may heal by itself
  const FALLBACK_AFTER_TIMEOUTS = 3; // consecutive ICE timeouts after having played
  const LATENCY_WINDOW_MS = 1000;
  // Nothing at all (media, RTCP, STUN consent responses: Chrome checks consent every
  // ~2.5 s on a stable pair) for this long: the path is dead (UDP blocked, server gone).
  const DEAD_AFTER_MS = 3500;
  // The server's media listener ports, substituted when rts serves this file.
  const MEDIA_PORT = '__MEDIA_PORT__';
  const MEDIA_TLS_PORT = '__MEDIA_TLS_PORT__';

  // Words for the server's `reason` on a refused signed URL (auth::Failure).
  const REASONS = {
    expired: 'the key has expired',
    missing: 'the URL needs an auth_key',
    malformed: 'the auth_key is malformed',
    bad_signature: 'the auth_key is not signed for this stream',
  };

  /** Splits a stream URL into the signaling origin, app, stream and auth_key.
   * Accepts http(s)://host/app/stream, .../play/app/stream, .../whep/app/stream,
   * artc://host/app/stream (RTS: HTTPS) and webrtc://host/app/stream (SRS). */
  function parseUrl(url) {
    let u = new URL(url, globalThis.location ? globalThis.location.href : undefined);
    let scheme = u.protocol;
    if (scheme === 'artc:' || scheme === 'webrtc:') {
      const https = scheme === 'artc:' || (globalThis.location && globalThis.location.protocol === 'https:');
      u = new URL((https ? 'https://' : 'http://') + url.slice(url.indexOf('//') + 2));
    }
    let parts = u.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if ((parts[0] === 'play' || parts[0] === 'whep') && parts.length >= 3) parts = parts.slice(1);
    parts = parts.slice(-2);
    const last = (parts[1] || '').replace(/\.(flv|m3u8)$/, '');
    return {
      origin: u.origin,
      secure: u.protocol === 'https:',
      hostname: u.hostname,
      host: u.host,
      app: u.searchParams.get('app') || parts[0] || 'live',
      stream: u.searchParams.get('stream') || last || 'stream',
      authKey: u.searchParams.get('auth_key'),
    };
  }

  function numericPort(p) { return /^[0-9]+$/.test(p) ? p : null; }

  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

  // A refused or failed request: status (0: network), the server's words and reason.
  class SignalingError extends Error {
    constructor(message, status, reason, retryAfterS) {
      super(message);
      this.status = status;
      this.reason = reason || null;
      this.retryAfterS = retryAfterS || null;
    }
  }

  async function readError(res, what) {
    const text = await res.text();
    let msg = text, reason = null;
    try {
      const j = JSON.parse(text);
      msg = j.error || j.msg || text;
      reason = j.reason || null;
    } catch (e) { /* not JSON */ }
    const retry = parseInt(res.headers.get('Retry-After') || '', 10);
    return new SignalingError(what + ': HTTP ' + res.status + ' ' + msg, res.status, reason, Number.isFinite(retry) ? retry : null);
  }

  /** Human words for an error: what a viewer needs to know. */
  function describe(err) {
    if (!err) return '';
    const s = err.status;
    if (s === 403) {
      const r = err.reason && (REASONS[err.reason] || err.reason);
      return 'Not allowed to play this stream' + (r ? ': ' + r : '') + ' (403)';
    }
    if (s === 503) return 'The server is busy; retrying' + (err.retryAfterS ? ' in ' + err.retryAfterS + ' s' : '') + ' (503)';
    if (s === 429) return 'Too many requests; retrying (429)';
    if (s === 404) return 'Unknown stream or domain (404)';
    if (s === 406) return 'No common codec with this browser (406)';
    if (s === 0) return 'Cannot reach the server; retrying';
    return String(err.message || err);
  }

  // ICE-lite server, controlling browser: the server's candidate comes in the answer
  // and the browser's only need to be in the offer, so gather fully first (bounded).
  function gatheringComplete(pc, timeoutMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
      function check() { if (pc.iceGatheringState === 'complete') done(); }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  class Player extends EventTarget {
    constructor(video, url, opts) {
      super();
      opts = opts || {};
      const t = parseUrl(url);
      this.video = video;
      this.app = t.app;
      this.stream = t.stream;
      this.origin = t.origin;
      this.host = t.host;
      this.signaling = (opts.signaling || 'whep').toLowerCase();
      this.protocol = (opts.protocol || 'webrtc').toLowerCase();
      this.authKey = opts.authKey || t.authKey || null;
      const port = t.secure ? numericPort(MEDIA_TLS_PORT) : numericPort(MEDIA_PORT);
      this.mediaBase = opts.media || (port ? (t.secure ? 'https://' : 'http://') + t.hostname + ':' + port : t.origin);
      this.opts = Object.assign({ reconnect: true, fallback: true, connectTimeoutMs: 5000, statsIntervalMs: 1000 }, opts);
      this.pc = null;
      this.hls = null;
      this.state = 'init';
      this.error = null; // the technical message (status, URL, server text)
      this.message = ''; // the same in words
      this.reason = null; // the server's `reason`, when it gave one
      this.resource = null; // WHEP session resource (Location), for switch and DELETE
      this.reconnects = 0;
      this.fallbackReason = null;
      this.switches = [];
      this.latency = { ms: null, source: null, samples: [] };
      this.firstFrameMs = null;
      this._gen = 0; // connection generation: callbacks of an old pc are ignored
      this._attempt = 0;
      this._timeouts = 0;
      this._everPlayed = false;
      this._dtlsAt = null;
      this._frameAt = null;
      this._prev = null; // previous stats sample, for rates
      this._closed = false;
      this._timers = new Set();
      video.playsInline = true;
      video.autoplay = true;
      video.muted = true; // video autoplays only muted; sound goes through `audio`
      this.audio = opts.audio || null;
      if (!this.audio) {
        this.audio = document.createElement('audio');
        this.audio.autoplay = true;
        this.audio.style.display = 'none';
        (video.parentNode || document.body).appendChild(this.audio);
      }
      this.audioBlocked = false;
      this._watchFrames();
      this._statsTimer = setInterval(() => this._tick(), this.opts.statsIntervalMs);
      if (this.protocol === 'hls') this._startHls().catch((e) => this._fail(e));
      else this._connect();
    }

    get path() { return '/' + encodeURIComponent(this.app) + '/' + encodeURIComponent(this.stream); }
    get authQuery() { return this.authKey ? '?auth_key=' + encodeURIComponent(this.authKey) : ''; }

    _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

    _setState(state, message) {
      this.state = state;
      if (message !== undefined) this.message = message;
      this._emit('state', { state, message: this.message, reason: this.reason, error: this.error });
    }

    _fail(err) {
      this.error = String(err && err.message || err);
      this.reason = err && err.reason || null;
      this._setState('error', describe(err));
      console.error('rts player:', this.error);
    }

    _later(fn, ms) {
      const id = setTimeout(() => { this._timers.delete(id); fn(); }, ms);
      this._timers.add(id);
      return id;
    }

    // ---- WebRTC --------------------------------------------------------------

    async _connect() {
      const gen = ++this._gen;
      this._dtlsAt = null;
      this._frameAt = null;
      this._aliveAt = null;
      this._alive = null;
      this._prev = null; // a new PeerConnection's counters start at zero
      this.firstFrameMs = null;
      try {
        await this._connectOnce(gen);
      } catch (err) {
        if (gen !== this._gen || this._closed) return;
        const s = err.status;
        // Refusals that another try will not change: say why and stop.
        if (s === 403 || s === 404 || s === 400 || s === 406 || s === 415) return this._fail(err);
        this.error = String(err.message || err);
        this.reason = err.reason || null;
        this._retry(describe(err), err.retryAfterS ? err.retryAfterS * 1000 : null);
      }
    }

    async _connectOnce(gen) {
      const signal = this._signalers[this.signaling];
      if (!signal) throw Object.assign(new Error('unknown signaling ' + this.signaling + ' (whep, rts, srs)'), { status: 400 });
      const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
      this.pc = pc;
      const videoTx = pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.ontrack = (ev) => {
        if (gen !== this._gen) return;
        if (ev.track.kind === 'video') {
          this.video.srcObject = new MediaStream([ev.track]);
          this.video.play().catch((e) => console.warn('video.play', e));
        } else if (ev.track.kind === 'audio') {
          // Audio samples are only counted (and heard) while the track plays out.
          this.audio.srcObject = new MediaStream([ev.track]);
          this._playAudio();
        }
      };
      pc.onconnectionstatechange = () => this._onPcState(pc, gen);
      if (this.state !== 'reconnecting') this._setState('gathering');
      await pc.setLocalDescription(await pc.createOffer());
      // DTLS up (not just ICE) is where firstFrameMs starts.
      const dtls = videoTx.receiver.transport;
      if (dtls) {
        dtls.addEventListener('statechange', () => {
          if (gen !== this._gen) return;
          if (dtls.state === 'connected') this._onDtlsConnected();
          else if (dtls.state === 'failed' || dtls.state === 'closed') this._lost(pc, gen, 'DTLS ' + dtls.state);
        });
      }
      await gatheringComplete(pc, 3000);
      if (gen !== this._gen) return;
      if (this.state !== 'reconnecting') this._setState('signaling');
      const answer = await signal.call(this, pc.localDescription.sdp);
      if (gen !== this._gen) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      if (this.state === 'signaling' || this.state === 'gathering') this._setState('connecting');
      // ICE + DTLS must come up within connectTimeoutMs (a LAN or the internet:
      // one or two round trips); else UDP is most likely blocked.
      this._later(() => {
        if (gen !== this._gen || this._closed || this._dtlsAt !== null) return;
        this._timeouts++;
        const never = !this._everPlayed;
        if (this.opts.fallback && (never || this._timeouts >= FALLBACK_AFTER_TIMEOUTS)) {
          this._fallback('WebRTC could not connect in ' + (this.opts.connectTimeoutMs / 1000) + ' s (UDP to the media port blocked?)');
        } else {
          this._lost(pc, gen, 'ICE did not connect in ' + this.opts.connectTimeoutMs + ' ms');
        }
      }, this.opts.connectTimeoutMs);
    }

    _onPcState(pc, gen) {
      if (gen !== this._gen) return;
      const st = pc.connectionState;
      if (st === 'connected') {
        clearTimeout(this._graceTimer);
        this._onDtlsConnected();
        if (this._frameAt !== null && this.state !== 'playing') this._setState('playing', '');
      } else if (st === 'disconnected') {
        // Consent checks or media stopped: give ICE a moment to heal, then reconnect.
        this._setState('stalled', 'Connection interrupted; waiting for it to recover');
        clearTimeout(this._graceTimer);
        this._graceTimer = setTimeout(() => {
          if (gen === this._gen && pc.connectionState !== 'connected') this._lost(pc, gen, 'ICE disconnected');
        }, DISCONNECTED_GRACE_MS);
      } else if (st === 'failed') {
        this._lost(pc, gen, 'connection failed');
      }
    }

    _onDtlsConnected() {
      if (this._dtlsAt !== null) return;
      this._dtlsAt = performance.now();
      this._timeouts = 0;
      if (!['playing', 'error', 'closed'].includes(this.state)) this._setState('connected', '');
      this._updateFirstFrame();
    }

    // A connection that was up (or never came up) is gone: reconnect with back-off.
    _lost(pc, gen, why) {
      if (gen !== this._gen || this._closed) return;
      this._gen++; // ignore everything the old connection still reports
      this.error = why;
      const old = this.resource;
      this.resource = null;
      try { pc.close(); } catch (e) { /* closed */ }
      if (old) fetch(old, { method: 'DELETE' }).catch(() => {});
      if (!this.opts.reconnect) return this._fail(new Error(why));
      this._retry('Reconnecting: ' + why);
    }

    _retry(message, delayMs) {
      const attempt = this._attempt++;
      const delay = delayMs != null ? delayMs : BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      this.reconnects++;
      this._setState('reconnecting', message);
      this._emit('reconnect', { attempt: attempt + 1, delayMs: delay, why: this.error });
      this._later(() => { if (!this._closed) this._connect(); }, delay);
    }

    async _fallback(reason) {
      this._gen++;
      this.fallbackReason = reason;
      const pc = this.pc, old = this.resource;
      this.resource = null;
      if (pc) try { pc.close(); } catch (e) { /* closed */ }
      if (old) fetch(old, { method: 'DELETE' }).catch(() => {});
      this.protocol = 'hls';
      this._setState('fallback', reason + '; playing LL-HLS instead');
      this._emit('fallback', { reason });
      try { await this._startHls(); } catch (e) { this._fail(e); }
    }

    _playAudio() {
      this.audio.play().then(() => {
        this.audioBlocked = false;
        this._emit('audio', { muted: this.audio.muted, blocked: false });
      }).catch(() => {
        // No user gesture yet: play muted (samples still flow), offer an unmute control.
        this.audioBlocked = true;
        this.audio.muted = true;
        this.audio.play().catch(() => {});
        this._emit('audio', { muted: true, blocked: true });
      });
    }

    /** Sound on (call from a user gesture: click, key) or off. */
    setMuted(muted) {
      if (this.protocol === 'hls') {
        this.video.muted = muted;
      } else {
        this.audio.muted = muted;
        if (!muted) this._playAudio();
      }
      this._emit('audio', { muted, blocked: false });
    }

    get muted() { return this.protocol === 'hls' ? this.video.muted : (this.audio.muted || this.audioBlocked); }

    get _signalers() {
      return {
        async whep(offer) {
          const url = this.origin + '/whep' + this.path + this.authQuery;
          let res;
          try {
            res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer });
          } catch (e) { throw new SignalingError('WHEP ' + url + ': ' + e.message, 0); }
          if (res.status !== 201 && res.status !== 200) throw await readError(res, 'WHEP ' + url);
          const text = await res.text();
          const location = res.headers.get('Location');
          // res.url: the node that answered (a full cluster node redirects with 307).
          if (location) this.resource = new URL(location, res.url || url).href;
          return text;
        },
        async rts(offer) {
          const url = this.origin + this.path + this.authQuery;
          const streamurl = 'artc://' + this.host + this.path + this.authQuery;
          const reply = await this._postJson(url, {
            version: '2', sdk_version: 'rts-player', streamurl, jsep: { type: 'offer', sdp: offer },
          });
          if (reply.code !== 200 || !reply.jsep || !reply.jsep.sdp) {
            throw new SignalingError('RTS signaling refused: ' + JSON.stringify(reply), reply.code || 500, reply.reason);
          }
          return reply.jsep.sdp;
        },
        async srs(offer) {
          const api = this.origin + '/rtc/v1/play/';
          const streamurl = 'webrtc://' + this.host + this.path + this.authQuery;
          const reply = await this._postJson(api, {
            api, streamurl, sdp: offer, clientip: null, tid: Math.random().toString(16).slice(2, 9),
          });
          if ((reply.code !== undefined && reply.code !== 0) || !reply.sdp) {
            throw new SignalingError('SRS signaling refused: ' + JSON.stringify(reply), reply.code || 500, reply.reason);
          }
          return reply.sdp;
        },
      };
    }

    async _postJson(url, body) {
      let res;
      try {
        res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      } catch (e) { throw new SignalingError(url + ': ' + e.message, 0); }
      if (!res.ok) throw await readError(res, url);
      const text = await res.text();
      try { return JSON.parse(text); } catch (e) { throw new SignalingError(url + ': response is not JSON: ' + text, 502); }
    }

    // ---- frames, first frame, latency ------------------------------------------

    _watchFrames() {
      const v = this.video;
      if (!('requestVideoFrameCallback' in v)) return;
      const onFrame = (now, meta) => {
        if (this._closed) return;
        this._markFrame();
        // Latency of the frame on screen, from when the server took it in to its
        // display time. Where Chrome maps the frame's RTP timestamp through the
        // server's sender reports (NTP = the wall clock at ingest) to its own clock,
        // that is captureTime. Chrome does that only once it knows the RTT, which a
        // receive-only peer mostly never learns; then: display time − arrival of the
        // frame's last packet (jitter buffer, decode, render) + half the ICE RTT (the
        // way here); rts adds under a millisecond between ingest and send.
        if (this.protocol === 'webrtc') {
          if (meta.captureTime) {
            this._latencySample(meta.expectedDisplayTime - meta.captureTime, 'sender report');
          } else if (meta.receiveTime) {
            const oneWay = this._rttMs != null ? this._rttMs / 2 : 0;
            this._latencySample(meta.expectedDisplayTime - meta.receiveTime + oneWay, 'arrival + RTT/2');
          }
        }
        for (const w of this._frameWaiters || []) w(now, meta);
        v.requestVideoFrameCallback(onFrame);
      };
      v.requestVideoFrameCallback(onFrame);
    }

    _latencySample(ms, source) {
      const t = performance.now();
      const s = this.latency.samples;
      s.push([t, ms]);
      while (s.length && s[0][0] < t - LATENCY_WINDOW_MS) s.shift();
      const sorted = s.map((x) => x[1]).sort((a, b) => a - b);
      this.latency.ms = sorted[Math.floor(sorted.length / 2)];
      this.latency.source = source;
    }

    _markFrame() {
      if (this._frameAt === null) {
        this._frameAt = performance.now();
        this._updateFirstFrame();
      }
    }

    _updateFirstFrame() {
      if (this.firstFrameMs !== null || this._frameAt === null || this._dtlsAt === null) return;
      this.firstFrameMs = Math.max(0, this._frameAt - this._dtlsAt);
      this._everPlayed = true;
      this._attempt = 0;
      if (!['error', 'closed'].includes(this.state)) this._setState('playing', '');
    }

    /** Moves this session to another stream (`app/stream`) without new ICE/DTLS:
     * POST {resource}/switch. Resolves at the new stream's first frame on screen with
     * {stream, httpMs, firstFrameMs, width, height}, times from the call. The first new
     * frame is the first with `expectWidth` pixels when given, else the first received
     * after the server's answer (the shard has switched when it answers). `expect` may
     * also be {width, authKey}: the target's own auth_key (signed URLs sign each stream's
     * path); without one, the player's current key is sent. */
    async switchTo(target, expect) {
      if (!this.resource) throw new Error('switch needs a WHEP session resource');
      const expectWidth = typeof expect === 'object' && expect ? expect.width : expect;
      const authKey = (typeof expect === 'object' && expect && expect.authKey) || this.authKey;
      const t0 = performance.now();
      let answeredAt = Infinity;
      const firstFrame = new Promise((resolve) => {
        const waiters = this._frameWaiters || (this._frameWaiters = []);
        const w = (now, meta) => {
          const fresh = expectWidth ? meta.width === expectWidth : meta.receiveTime !== undefined && meta.receiveTime >= answeredAt;
          if (fresh) {
            waiters.splice(waiters.indexOf(w), 1);
            resolve({ ms: performance.now() - t0, width: meta.width, height: meta.height });
          }
        };
        waiters.push(w);
      });
      const q = new URLSearchParams({ stream: target });
      if (authKey) q.set('auth_key', authKey);
      const res = await fetch(this.resource + '/switch?' + q.toString(), { method: 'POST' });
      answeredAt = performance.now();
      const httpMs = answeredAt - t0;
      if (!res.ok) {
        const err = await readError(res, 'switch to ' + target);
        this._frameWaiters = [];
        throw err;
      }
      const [app, stream] = target.split('/');
      this.app = app;
      this.stream = stream;
      this.authKey = authKey; // a reconnect plays the new stream with its key
      this.latency.samples = [];
      const f = await firstFrame;
      const r = { stream: target, httpMs, firstFrameMs: f.ms, width: f.width, height: f.height };
      this.switches.push(r);
      this._emit('switch', r);
      return r;
    }

    // ---- figures ----------------------------------------------------------------

    async stats() {
      if (this.protocol === 'hls') return this._hlsStats();
      const out = {
        state: this.state, protocol: 'webrtc', signaling: this.signaling,
        framesDecoded: 0, framesReceived: 0, framesDropped: 0, packetsLost: 0, packetsReceived: 0, jitter: 0,
        totalSamplesReceived: 0, concealedSamples: 0, bytesReceived: 0,
        videoPacketsReceived: 0, audioPacketsReceived: 0, frameWidth: 0, frameHeight: 0,
        freezeCount: 0, totalFreezesDurationMs: 0, nackCount: 0, pliCount: 0,
        connectionState: this.pc ? this.pc.connectionState : 'new',
        firstFrameMs: null, latencyMs: null, latencySource: null,
        fps: null, bitrateKbps: null, lossPercent: null, jitterBufferMs: null, rttMs: null,
        reconnects: this.reconnects, message: this.message, reason: this.reason,
      };
      if (!this.pc) return out;
      const report = await this.pc.getStats();
      let jbDelay = 0, jbCount = 0, video = null, alive = 0;
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated) {
          if (s.currentRoundTripTime !== undefined) out.rttMs = s.currentRoundTripTime * 1000;
          alive += (s.bytesReceived || 0) + (s.responsesReceived || 0) + (s.requestsReceived || 0);
        }
        if (s.type !== 'inbound-rtp') return;
        out.packetsLost += s.packetsLost || 0;
        out.packetsReceived += s.packetsReceived || 0;
        out.bytesReceived += s.bytesReceived || 0;
        out.nackCount += s.nackCount || 0;
        out.jitter = Math.max(out.jitter, s.jitter || 0); // seconds; the worst stream
        if (s.kind === 'video') {
          video = s;
          out.framesDecoded += s.framesDecoded || 0;
          out.framesReceived += s.framesReceived || 0;
          out.framesDropped += s.framesDropped || 0;
          out.videoPacketsReceived += s.packetsReceived || 0;
          out.frameWidth = s.frameWidth || out.frameWidth;
          out.frameHeight = s.frameHeight || out.frameHeight;
          out.freezeCount += s.freezeCount || 0;
          out.totalFreezesDurationMs += 1000 * (s.totalFreezesDuration || 0);
          out.pliCount += s.pliCount || 0;
          jbDelay = s.jitterBufferDelay || 0;
          jbCount = s.jitterBufferEmittedCount || 0;
        } else if (s.kind === 'audio') {
          out.totalSamplesReceived += s.totalSamplesReceived || 0;
          out.concealedSamples += s.concealedSamples || 0;
          out.audioPacketsReceived += s.packetsReceived || 0;
        }
      });
      // Rates over the interval since the previous read (at least 250 ms apart).
      const now = performance.now();
      const cur = { t: now, bytes: out.bytesReceived, frames: out.framesDecoded, lost: out.packetsLost, recv: out.packetsReceived, jbDelay, jbCount };
      const p = this._prev;
      if (p && now - p.t >= 250) {
        const dt = (now - p.t) / 1000;
        out.bitrateKbps = Math.max(0, (cur.bytes - p.bytes) * 8 / 1000 / dt);
        out.fps = Math.max(0, (cur.frames - p.frames) / dt);
        const lost = cur.lost - p.lost, got = cur.recv - p.recv;
        out.lossPercent = lost + got > 0 ? Math.max(0, 100 * lost / (lost + got)) : 0;
        out.jitterBufferMs = cur.jbCount > p.jbCount ? 1000 * (cur.jbDelay - p.jbDelay) / (cur.jbCount - p.jbCount) : null;
        this._prev = cur;
        this._rates = { bitrateKbps: out.bitrateKbps, fps: out.fps, lossPercent: out.lossPercent, jitterBufferMs: out.jitterBufferMs };
      } else {
        if (!p) this._prev = cur;
        Object.assign(out, this._rates || {});
      }
      // Latency: the frames on screen (rVFC, see _watchFrames); else Chrome's playout
      // estimate of the video track in the sender's NTP clock.
      if (out.rttMs !== null) this._rttMs = out.rttMs;
      if (alive !== this._alive) { this._alive = alive; this._aliveAt = now; }
      if (this.latency.ms !== null && this.latency.samples.length) {
        out.latencyMs = this.latency.ms;
        out.latencySource = this.latency.source;
      } else if (video && video.estimatedPlayoutTimestamp) {
        out.latencyMs = video.timestamp - (video.estimatedPlayoutTimestamp - NTP_UNIX_MS);
        out.latencySource = 'playout estimate';
      }
      // Every read also feeds the first-frame detector, so a caller never sees
      // frames decoded with firstFrameMs still unknown.
      if (out.framesDecoded > 0) this._markFrame();
      if (out.connectionState === 'connected') this._onDtlsConnected();
      out.firstFrameMs = this.firstFrameMs;
      out.state = this.state;
      return out;
    }

    async _tick() {
      if (this._closed) return;
      try {
        const s = await this.stats();
        // A dead path: reconnect without waiting for ICE to call it (Chrome takes ~6 s).
        if (this.protocol === 'webrtc' && this._dtlsAt !== null && this._aliveAt && this.pc
            && performance.now() - this._aliveAt > DEAD_AFTER_MS) {
          this._aliveAt = null;
          return this._lost(this.pc, this._gen, 'nothing received for ' + (DEAD_AFTER_MS / 1000) + ' s');
        }
        // Connected but no picture: the stream is not live (yet), or it stopped.
        const quiet = this._lastFrames === s.framesDecoded;
        this._lastFrames = s.framesDecoded;
        if (this.protocol === 'webrtc' && s.connectionState === 'connected') {
          if (this._frameAt === null && performance.now() - this._dtlsAt > 3000) {
            if (this.message === '') this._setState(this.state, 'Connected; waiting for the stream to go live');
          } else if (this._frameAt !== null && quiet && this.state === 'playing') {
            if (this.message === '') this._setState('playing', 'No video from the stream (publisher stopped?)');
          } else if (!quiet && this.message && this.state === 'playing') {
            this._setState('playing', '');
          }
        }
        this.lastStats = s;
        this._emit('stats', s);
      } catch (e) { /* closed under us */ }
    }

    /** Ends playback: closes the PeerConnection, DELETEs the WHEP resource (resolves
     * to its HTTP status, or null) or stops hls.js. */
    async stop() {
      this._closed = true;
      this._gen++;
      for (const id of this._timers) clearTimeout(id);
      clearTimeout(this._graceTimer);
      clearInterval(this._statsTimer);
      if (this.hls) { this.hls.destroy(); }
      if (this.pc) this.pc.close();
      this._setState('closed');
      if (this.resource) {
        const url = this.resource;
        this.resource = null;
        const res = await fetch(url, { method: 'DELETE' });
        return res.status;
      }
      return null;
    }

    // ---- LL-HLS (hls.js over MSE) -------------------------------------------------

    async _startHls() {
      if (!globalThis.Hls) {
        await new Promise((resolve, reject) => {
          const s = document.createElement('script');
          s.src = this.origin + '/player/hls.min.js';
          s.onload = resolve;
          s.onerror = () => reject(new Error('cannot load ' + s.src));
          document.head.appendChild(s);
        });
      }
      const Hls = globalThis.Hls;
      if (!Hls || !Hls.isSupported()) throw new Error('this browser has no MediaSource for hls.js');
      const hls = new Hls({ lowLatencyMode: true, backBufferLength: 10 });
      this.hls = hls;
      hls.on(Hls.Events.ERROR, (_e, d) => {
        if (d.fatal) this._fail(new Error('hls.js: ' + d.type + ' ' + d.details));
      });
      hls.on(Hls.Events.FRAG_LOADED, (_e, d) => {
        const st = (d.part || d.frag || {}).stats;
        this._hlsBytes = (this._hlsBytes || 0) + (st ? st.loaded || st.total || 0 : 0);
      });
      hls.on(Hls.Events.FRAG_BUFFERED, () => {
        if (this.state === 'loading' || this.state === 'fallback') this._setState('playing', this.fallbackReason ? 'LL-HLS (fallback: ' + this.fallbackReason + ')' : '');
      });
      if (this.state !== 'fallback') this._setState('loading');
      this.video.srcObject = null;
      hls.loadSource(this.mediaBase + this.path + '.m3u8' + this.authQuery);
      hls.attachMedia(this.video);
      this.video.play().catch(() => {});
      // Sound comes with the video element here: muted until the viewer unmutes.
      this._emit('audio', { muted: this.video.muted, blocked: this.video.muted });
    }

    // Media bytes loaded (segments and parts) per second since the previous read.
    _hlsRate() {
      const now = performance.now(), p = this._hlsPrev;
      if (!p) { this._hlsPrev = { t: now, bytes: this._hlsBytes || 0 }; return null; }
      if (now - p.t < 250) return this._hlsKbps || null;
      this._hlsKbps = ((this._hlsBytes || 0) - p.bytes) * 8 / (now - p.t);
      this._hlsPrev = { t: now, bytes: this._hlsBytes || 0 };
      return this._hlsKbps;
    }

    async _hlsStats() {
      const v = this.video;
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
      const hls = this.hls;
      const date = hls && hls.playingDate;
      return {
        state: this.state,
        protocol: 'hls',
        fallback: this.fallbackReason,
        framesDecoded: q.totalVideoFrames || 0,
        framesDropped: q.droppedVideoFrames || 0,
        currentTime: v.currentTime,
        paused: v.paused,
        frameWidth: v.videoWidth,
        frameHeight: v.videoHeight,
        // now minus the EXT-X-PROGRAM-DATE-TIME of the frame on screen (when the
        // server received it).
        latencyMs: date ? Date.now() - date.getTime() : null,
        latencySource: 'program date time',
        liveEdgeLatencyS: hls ? hls.latency : null,
        targetLatencyS: hls ? hls.targetLatency : null,
        bitrateKbps: this._hlsRate(),
        reconnects: this.reconnects,
        message: this.message,
      };
    }
  }

  /** Plays `url` (http(s)://host/app/stream, artc://..., webrtc://...) in `video`. */
  function play(video, url, opts) { return new Player(video, url, opts); }

  // `rts` for pages; `rtsPlayer` too, for pages (the player page, the feed) that use
  // window.rts for their Player.
  globalThis.rts = globalThis.rtsPlayer = { play, Player, parseUrl, describe, version: '1' };
})();
