// The live demo's page: speech in (microphone or file) -> the /stream WebSocket -> frames out,
// shown at 25 fps in step with their sound. The messages are those of jaxtalk/serve/protocol.py.

const SAMPLE_RATE = 16000;
const SAMPLES_PER_FRAME = 640;
const FPS = 25;
// Audio goes out two frames (80 ms) at a time: short enough to add little delay, long enough not
// to send a message every 8 ms.
const BLOCK_SAMPLES = 2 * SAMPLES_PER_FRAME;
// A file is sent in real time, this far ahead of the clock, and it waits while this much is still
// unsent in the socket (the server is behind): the browser never buffers a whole file.
const FILE_LEAD_S = 0.2;
const MAX_UNSENT_BYTES = 256 * 1024;
// A frame is shown this long after the first one arrives; the delay grows whenever a frame comes
// too late for its place, so that bursts of frames (the model makes them a chunk at a time) play
// evenly.
const FIRST_DELAY_S = 0.15;
const MAX_DELAY_S = 3;

const $ = (id) => document.getElementById(id);

// The microphone's worklet, as source text: a module of its own would be one more file to serve.
// It collects the (mono, 16 kHz) input into blocks and posts each one; "flush" posts the partial
// block and then "flushed".
const CAPTURE_WORKLET = `
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(${BLOCK_SAMPLES});
    this.filled = 0;
    this.port.onmessage = () => {
      this.port.postMessage(this.block.slice(0, this.filled));
      this.filled = 0;
      this.port.postMessage("flushed");
    };
  }
  process(inputs) {
    const channel = inputs[0][0];
    for (let offset = 0; channel && offset < channel.length; ) {
      const n = Math.min(channel.length - offset, this.block.length - this.filled);
      this.block.set(channel.subarray(offset, offset + n), this.filled);
      this.filled += n;
      offset += n;
      if (this.filled === this.block.length) {
        this.port.postMessage(this.block, [this.block.buffer]);
        this.block = new Float32Array(${BLOCK_SAMPLES});
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("capture", Capture);
`;

// ------------------------------------------------------------------------------ speech sources

// The microphone through an AudioWorklet, or a ScriptProcessor where worklets are missing.
class Microphone {
  static async open(context) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true },
    });
    const mic = new Microphone(context, stream);
    if (context.audioWorklet) {
      const url = URL.createObjectURL(new Blob([CAPTURE_WORKLET], { type: "text/javascript" }));
      await context.audioWorklet.addModule(url);
      URL.revokeObjectURL(url);
      mic.node = new AudioWorkletNode(context, "capture", {
        channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers",
      });
    } else {
      mic.node = context.createScriptProcessor(4096, 1, 1);
    }
    return mic;
  }

  constructor(context, stream) {
    this.context = context;
    this.stream = stream;
    this.input = context.createMediaStreamSource(stream);
  }

  start(onBlock) {
    if (this.node.port) {
      this.flushed = new Promise((resolve) => {
        this.node.port.onmessage = (event) => {
          if (event.data === "flushed") resolve();
          else if (event.data.length) onBlock(event.data);
        };
      });
    } else {
      this.node.onaudioprocess = (event) => onBlock(event.inputBuffer.getChannelData(0).slice());
      this.flushed = Promise.resolve();
    }
    this.input.connect(this.node);
    // A node runs only when something pulls on it; its output is silence.
    this.node.connect(this.context.destination);
  }

  // Resolves once every captured sample has been handed to onBlock.
  async stop() {
    this.input.disconnect();
    this.stream.getTracks().forEach((track) => track.stop());
    if (this.node.port) this.node.port.postMessage("flush");
    await this.flushed;
    this.node.disconnect();
  }
}

// An audio file decoded to 16 kHz mono, sent in real-time-sized blocks.
class AudioFile {
  static async open(file) {
    const bytes = await file.arrayBuffer();
    // Decoding resamples to the context's rate; rendering through a one-channel destination mixes
    // the channels down.
    const decoded = await new OfflineAudioContext(1, 1, SAMPLE_RATE).decodeAudioData(bytes);
    const length = Math.max(1, Math.ceil(decoded.duration * SAMPLE_RATE));
    const mixer = new OfflineAudioContext(1, length, SAMPLE_RATE);
    const player = mixer.createBufferSource();
    player.buffer = decoded;
    player.connect(mixer.destination);
    player.start();
    return new AudioFile((await mixer.startRendering()).getChannelData(0));
  }

  constructor(samples) {
    this.samples = samples;
    this.sent = 0;
  }

  // Calls onBlock in real time, and onEnd after the last block.
  start(onBlock, canSend, onEnd) {
    const begun = performance.now();
    this.timer = setInterval(() => {
      const due = ((performance.now() - begun) / 1000 + FILE_LEAD_S) * SAMPLE_RATE;
      while (this.sent < Math.min(due, this.samples.length) && canSend()) {
        const block = this.samples.slice(this.sent, this.sent + BLOCK_SAMPLES);
        this.sent += block.length;
        onBlock(block);
      }
      if (this.sent >= this.samples.length) {
        this.stop();
        onEnd();
      }
    }, 20);
  }

  async stop() {
    clearInterval(this.timer);
  }
}

// --------------------------------------------------------------------------------- playback

// Everything sent this session, so frame i can be played with samples [640 i, 640 (i + 1)).
class SampleStore {
  constructor() {
    this.data = new Float32Array(SAMPLE_RATE * 10);
    this.length = 0;
  }

  append(block) {
    if (this.length + block.length > this.data.length) {
      const larger = new Float32Array(2 * (this.length + block.length));
      larger.set(this.data.subarray(0, this.length));
      this.data = larger;
    }
    this.data.set(block, this.length);
    this.length += block.length;
  }

  frame(index) {
    return this.data.slice(index * SAMPLES_PER_FRAME, (index + 1) * SAMPLES_PER_FRAME);
  }
}

// Shows frame i at start + i / 25 on the audio context's clock, and plays its audio at that time.
class Player {
  constructor(context, canvas, sound) {
    this.context = context;
    this.canvas = canvas;
    this.draw = canvas.getContext("2d");
    this.output = context.createGain();
    this.output.gain.value = sound ? 1 : 0;
    this.output.connect(context.destination);
    this.audio = new SampleStore();
    this.delay = FIRST_DELAY_S;
    this.start = null;
    this.waiting = [];
    this.decoded = Promise.resolve();
    this.shown = null;
    this.running = true;
    requestAnimationFrame(() => this.tick());
  }

  setSound(on) {
    this.output.gain.value = on ? 1 : 0;
  }

  // Frames are decoded one after another, so they are scheduled in order.
  addFrame(index, jpeg) {
    const blob = new Blob([jpeg], { type: "image/jpeg" });
    this.decoded = this.decoded
      .then(() => createImageBitmap(blob))
      .then((bitmap) => this.schedule(index, bitmap));
  }

  schedule(index, bitmap) {
    const now = this.context.currentTime;
    if (this.start !== null && this.start + index / FPS < now) {
      // Late: everything from here on moves later, by more than it was late.
      this.delay = Math.min(MAX_DELAY_S, this.delay + (now - this.start - index / FPS) + 0.05);
      this.start = null;
    }
    if (this.start === null) this.start = now + this.delay - index / FPS;
    const due = this.start + index / FPS;
    const buffer = this.context.createBuffer(1, SAMPLES_PER_FRAME, SAMPLE_RATE);
    buffer.copyToChannel(this.audio.frame(index), 0);
    const voice = this.context.createBufferSource();
    voice.buffer = buffer;
    voice.connect(this.output);
    voice.start(due);
    this.waiting.push({ index, due, bitmap });
  }

  tick() {
    if (!this.running) return;
    const now = this.context.currentTime;
    while (this.waiting.length && this.waiting[0].due <= now) {
      const frame = this.waiting.shift();
      this.draw.drawImage(frame.bitmap, 0, 0, this.canvas.width, this.canvas.height);
      frame.bitmap.close();
      this.shown = frame.index;
      $("frame-counter").textContent = String(frame.index);
    }
    requestAnimationFrame(() => this.tick());
  }

  // Resolves once every frame received has been shown.
  async drain() {
    await this.decoded;
    while (this.waiting.length) await new Promise((resolve) => setTimeout(resolve, 40));
  }

  stop() {
    this.running = false;
    this.waiting.forEach((frame) => frame.bitmap.close());
    this.waiting = [];
    this.output.disconnect();
  }
}

// ------------------------------------------------------------------------------ the session

// The page's one WebSocket: sessions one after another, each video downloadable while it is open.
class Link {
  constructor(handlers) {
    this.handlers = handlers;
    this.socket = null;
  }

  async open() {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/stream`);
    socket.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error("cannot reach the server"));
    });
    socket.onmessage = (event) => {
      if (typeof event.data === "string") this.handlers.control(JSON.parse(event.data));
      else this.handlers.frame(new DataView(event.data).getUint32(0, true), event.data.slice(4));
    };
    socket.onclose = () => this.handlers.closed();
    this.socket = socket;
  }

  // A string is a control message; a Float32Array goes out as its bytes (little-endian on every
  // platform browsers run on).
  send(message) {
    this.socket.send(message);
  }

  unsentBytes() {
    return this.socket.bufferedAmount;
  }
}

const page = {
  context: null, // one 16 kHz AudioContext for capture and playback
  source: null, // the Microphone or AudioFile of the session
  player: null,
  sent: 0, // samples sent this session
  received: 0, // frames received this session
  state: "idle", // idle | starting | streaming | ending
  started: null, // resolves with the "started" message
};

const link = new Link({
  control(message) {
    if (message.type === "started") {
      page.started?.resolve(message);
    } else if (message.type === "done") {
      finished(message);
    } else if (message.type === "error") {
      // While a start waits for its answer, any error is the answer.
      if (page.started) page.started.reject(new Error(message.message));
      else if (message.session_ended) abandon(message.message);
      else setStatus(`the server ignored a message: ${message.message}`, true);
    }
  },
  frame(index, jpeg) {
    if (!page.player) return;
    page.received += 1;
    page.player.addFrame(index, jpeg);
    $("frames-received").textContent = String(page.received);
    const ahead = page.sent - (index + 1) * SAMPLES_PER_FRAME;
    $("latency").textContent = `${Math.round((ahead / SAMPLE_RATE) * 1000)} ms`;
  },
  closed() {
    $("result").hidden = true; // the server deletes a connection's video with it
    if (page.state !== "idle") abandon("the connection to the server closed");
  },
});

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function setButtons() {
  const idle = page.state === "idle";
  const streaming = page.state === "streaming";
  const usingMic = page.source instanceof Microphone;
  const micAllowed = Boolean(navigator.mediaDevices?.getUserMedia);
  $("mic-button").disabled = !((idle && micAllowed) || (streaming && usingMic));
  $("mic-button").textContent = streaming && usingMic ? "Stop" : "Speak into the microphone";
  $("mic-button").classList.toggle("stop", streaming && usingMic);
  $("file-button").disabled = !((idle && $("audio-file").files.length) || (streaming && !usingMic));
  $("file-button").textContent = streaming && !usingMic ? "Stop" : "Play it";
  $("file-button").classList.toggle("stop", streaming && !usingMic);
  // The controls hold for a whole session: changes wait for the next start.
  $("acting").disabled = !idle;
}

// A control left to the model (auto) is disabled, shows no value and is not sent.
function showControls() {
  $("intensity").disabled = $("emotion-guidance").disabled = $("emotion").value === "auto";
  $("pose-amplitude").disabled = $("pose-auto").checked;
  $("blink-rate").disabled = $("blink-auto").checked;
  for (const id of ["intensity", "pose-amplitude", "blink-rate"]) {
    $(`${id}-value`).textContent = $(id).disabled ? "" : $(id).value;
  }
}

// The start message's acting controls (protocol.py); a guidance field left empty is the model's.
function actingControls() {
  const number = (id) => ($(id).disabled || $(id).value === "" ? undefined : Number($(id).value));
  return {
    emotion: $("emotion").value,
    intensity: number("intensity"),
    pose_amplitude: number("pose-amplitude"),
    blink_rate: number("blink-rate"),
    audio_guidance: number("audio-guidance"),
    emotion_guidance: number("emotion-guidance"),
  };
}

// The model's emotions, the controls' bounds and its own guidance, from the server.
async function loadControls() {
  try {
    const response = await fetch("/controls");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const controls = await response.json();
    for (const label of controls.emotions) $("emotion").add(new Option(label, label));
    $("pose-amplitude").max = controls.max_pose_amplitude;
    $("blink-rate").max = controls.max_blink_rate;
    $("audio-guidance").max = $("emotion-guidance").max = controls.max_guidance;
    $("audio-guidance").value = controls.audio_guidance;
    $("emotion-guidance").value = controls.emotion_guidance;
  } catch (error) {
    setStatus(`cannot read the model's acting controls (${error.message}): only auto`, true);
  }
}

function selectedPortrait() {
  return document.querySelector('input[name="portrait"]:checked').value;
}

// Runs in a click handler: the AudioContext is made before any await, while the click still
// counts as the user's permission to play sound.
async function startSession(openSource) {
  page.context ??= new AudioContext({ sampleRate: SAMPLE_RATE });
  page.state = "starting";
  setButtons();
  $("result").hidden = true;
  setStatus("starting…");
  try {
    await page.context.resume();
    page.source = await openSource();
    await link.open();
    const started = new Promise((resolve, reject) => (page.started = { resolve, reject }));
    const seed = Math.max(0, Math.floor(Number($("seed").value) || 0));
    const start = { type: "start", portrait: selectedPortrait(), seed, ...actingControls() };
    link.send(JSON.stringify(start)); // undefined values (controls not given) are left out
    const info = await started;
    page.started = null;
    $("lookahead").textContent = `${Math.round(info.lookahead_ms)} ms`;
    page.sent = page.received = 0;
    $("frames-received").textContent = "0";
    $("frame-counter").textContent = $("latency").textContent = "–";
    page.player?.stop();
    page.player = new Player(page.context, $("screen"), $("sound").checked);
    page.state = "streaming";
    setButtons();
    setStatus(page.source instanceof Microphone ? "listening: speak now" : "playing the file");
    const send = (block) => {
      page.player.audio.append(block);
      link.send(block);
      page.sent += block.length;
      $("audio-sent").textContent = `${(page.sent / SAMPLE_RATE).toFixed(2)} s`;
    };
    if (page.source instanceof Microphone) page.source.start(send);
    else page.source.start(send, () => link.unsentBytes() < MAX_UNSENT_BYTES, endSession);
  } catch (error) {
    abandon(error.message);
  }
}

async function endSession() {
  if (page.state !== "streaming") return;
  page.state = "ending";
  setButtons();
  setStatus("making the last frames and the video…");
  await page.source.stop();
  link.send(JSON.stringify({ type: "end" }));
}

async function finished(done) {
  if (!page.player) return;
  await page.player.drain();
  page.state = "idle";
  page.source = null;
  setButtons();
  const seconds = (done.samples / SAMPLE_RATE).toFixed(2);
  setStatus(`done: ${done.frames} frames from ${seconds} s of audio`);
  if (done.download) {
    const anchor = $("download");
    anchor.href = done.download;
    anchor.textContent = `Download the video (${done.frames} frames, mp4)`;
    anchor.dataset.frames = done.frames;
    anchor.dataset.samples = done.samples;
    $("result").hidden = false;
  }
}

// Ends the session on the page's side after an error.
function abandon(reason) {
  page.source?.stop();
  page.source = null;
  page.started = null;
  page.player?.stop();
  page.player = null;
  page.state = "idle";
  setButtons();
  setStatus(reason, true);
}

$("mic-button").onclick = () => {
  if (page.state === "streaming") endSession();
  else startSession(() => Microphone.open(page.context));
};

$("file-button").onclick = () => {
  if (page.state === "streaming") endSession();
  else startSession(() => AudioFile.open($("audio-file").files[0]));
};

$("audio-file").onchange = setButtons;
for (const id of ["emotion", "intensity", "pose-amplitude", "pose-auto", "blink-rate", "blink-auto"]) {
  $(id).oninput = showControls;
}
$("sound").onchange = () => page.player?.setSound($("sound").checked);

$("portrait-file").onchange = async () => {
  const file = $("portrait-file").files[0];
  if (!file) return;
  $("portrait-note").textContent = "framing your portrait…";
  try {
    const response = await fetch("/portraits", { method: "POST", body: file });
    const reply = await response.json();
    if (!response.ok) throw new Error(reply.error);
    $("upload-radio").value = reply.portrait;
    $("upload-preview").src = reply.preview;
    $("upload-choice").hidden = false;
    $("upload-radio").checked = true;
    $("portrait-note").textContent = reply.warning || "Framed as the model sees faces.";
  } catch (error) {
    $("portrait-note").textContent = error.message;
  }
};

if (!navigator.mediaDevices?.getUserMedia) {
  $("mic-button").title = "browsers allow the microphone only on https pages and on localhost";
}
setButtons();
showControls();
loadControls();
