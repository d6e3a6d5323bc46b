/* The "Try it" page: the shipped try-on model dresses a person in the reader's browser.
 *
 * Every asset is a classic script beside this one (tools/build_book.py writes them with
 * gardiffmini.export.page): from file:// a page may neither fetch nor import modules. The
 * gallery loads with the page; onnxruntime-web and the two graphs load on the first press.
 * The sampling loop is GarDiffPipeline's: the denoise graph gives the guided noise
 * prediction, the DDIM step is the linear map read off diffusers' scheduler.step, the decode
 * graph decodes and pastes back outside the agnostic mask.
 */
(function () {
  'use strict';
  var script = document.currentScript;
  var BASE = script.src.slice(0, script.src.lastIndexOf('/') + 1);
  var DATA = window.GARDIFF_TRYIT = window.GARDIFF_TRYIT || {};
  var api = window.gardiffTryIt = {state: 'loading', last: null};

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function loadScript(name) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement('script');
      s.src = BASE + name;
      s.onload = resolve;
      s.onerror = function () { reject(new Error('could not load ' + BASE + name)); };
      document.head.appendChild(s);
    });
  }

  function bytesOf(base64) {
    var text = atob(base64);
    var out = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) { out[i] = text.charCodeAt(i); }
    return out;
  }

  function gunzip(base64) {
    var stream = new Blob([bytesOf(base64)]).stream()
      .pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).arrayBuffer().then(function (b) { return new Uint8Array(b); });
  }

  var TYPES = {float32: Float32Array, uint8: Uint8Array, int64: BigInt64Array};

  function unpack(packed) {
    return gunzip(packed.gzip).then(function (bytes) {
      var arrays = {};
      Object.keys(packed.index).forEach(function (name) {
        var e = packed.index[name];
        var Type = TYPES[e.dtype];
        var copy = bytes.slice(e.offset, e.offset + e.bytes);
        arrays[name] = {data: new Type(copy.buffer), shape: e.shape};
      });
      return arrays;
    });
  }

  function item(array, index) {
    var size = array.shape.slice(1).reduce(function (a, b) { return a * b; }, 1);
    return array.data.subarray(index * size, (index + 1) * size);
  }

  function megabytes(n) {
    return n >= 1e6 ? (n / 1e6).toFixed(1) + ' MB' : Math.max(1, Math.round(n / 1e3)) + ' kB';
  }

  // ---- noise: PyTorch's for the shipped seeds, else a seeded Gaussian drawn here ----
  function pageNoise(seed, n) {
    var s = (seed >>> 0) ^ 0x9e3779b9;
    function uniform() {  // mulberry32
      s = (s + 0x6d2b79f5) | 0;
      var t = Math.imul(s ^ (s >>> 15), 1 | s);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297;
    }
    var out = new Float32Array(n);
    for (var i = 0; i < n; i += 2) {  // Box-Muller
      var r = Math.sqrt(-2 * Math.log(uniform())), a = 2 * Math.PI * uniform();
      out[i] = r * Math.cos(a);
      if (i + 1 < n) { out[i + 1] = r * Math.sin(a); }
    }
    return out;
  }

  // ---- drawing ----
  function draw(canvas, chw, height, width, isUint8) {
    var ctx = canvas.getContext('2d');
    var image = ctx.createImageData(width, height);
    var plane = height * width;
    for (var p = 0; p < plane; p++) {
      for (var c = 0; c < 3; c++) {
        var v = chw[c * plane + p];
        image.data[4 * p + c] = isUint8 ? v : Math.round(Math.min(1, Math.max(0, v)) * 255);
      }
      image.data[4 * p + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }

  // ---- the page ----
  var root = document.getElementById('gardiff-tryit');
  var ui = {};
  var gallery = null, arrays = null, sessions = null, pick = {person: 0, garment: 0};

  function say(text, isError) {
    ui.status.textContent = text;
    ui.status.className = 'tryit-status' + (isError ? ' tryit-error' : '');
  }

  function fail(error) {
    api.state = 'error';
    api.error = String(error && error.message || error);
    root.setAttribute('data-state', 'error');
    say(api.error, true);
    ui.button.disabled = false;
  }

  function thumbs(list, kind) {
    var row = el('div', {'class': 'tryit-row', 'data-kind': kind});
    list.forEach(function (entry, i) {
      var button = el('button', {'class': 'tryit-thumb', type: 'button', title: entry.name,
                                 'data-index': String(i)},
                      [el('img', {src: entry.image, alt: kind + ' ' + entry.name})]);
      button.addEventListener('click', function () { choose(kind, i); });
      row.appendChild(button);
    });
    return row;
  }

  function choose(kind, index) {
    pick[kind] = index;
    Array.from(root.querySelectorAll('.tryit-row[data-kind="' + kind + '"] .tryit-thumb'))
      .forEach(function (b, i) { b.classList.toggle('tryit-picked', i === index); });
    if (arrays) {
      var h = gallery.size[0], w = gallery.size[1];
      draw(ui.paste, item(arrays.warp_paste, pick.person * gallery.garments.length
                          + pick.garment), h, w, true);
    }
  }

  function figure(label) {
    var canvas = el('canvas', {width: String(gallery.size[1]), height: String(gallery.size[0]),
                               'class': 'tryit-canvas'});
    var box = el('figure', {'class': 'tryit-figure'},
                 [canvas, el('figcaption', {text: label})]);
    return {canvas: canvas, box: box};
  }

  function build() {
    var m = DATA.manifest;
    root.innerHTML = '';
    ui.status = el('p', {'class': 'tryit-status'});
    ui.weight = document.getElementById('tryit-weight');
    var total = Object.keys(m.files).reduce(function (a, k) { return a + m.files[k]; }, 0);
    api.pageBytes = total;
    if (ui.weight) {
      ui.weight.textContent = megabytes(total) + ' (' + Object.keys(m.files).sort()
        .map(function (k) { return k + ' ' + megabytes(m.files[k]); }).join(', ') + ')';
    }
    if (!gallery) {
      root.appendChild(ui.status);
      ui.button = el('button', {});
      say('This page cannot run the model: ' + m.missing.join('; '), true);
      api.state = 'missing';
      root.setAttribute('data-state', 'missing');
      return;
    }
    root.appendChild(el('p', {'class': 'tryit-label', text: 'Person'}));
    root.appendChild(thumbs(gallery.persons, 'person'));
    root.appendChild(el('p', {'class': 'tryit-label', text: 'Garment'}));
    root.appendChild(thumbs(gallery.garments, 'garment'));
    ui.seed = el('input', {type: 'number', min: '0', step: '1', value: '0', id: 'tryit-seed'});
    ui.guidance = el('input', {type: 'range', min: '1', max: '5', step: '0.25',
                               value: String(gallery.guidance_scale), id: 'tryit-guidance'});
    ui.guidanceValue = el('span', {text: String(gallery.guidance_scale)});
    ui.guidance.addEventListener('input', function () {
      ui.guidanceValue.textContent = ui.guidance.value;
    });
    ui.steps = el('select', {id: 'tryit-steps'});
    Object.keys(gallery.scheduler.tables).map(Number).sort(function (a, b) { return a - b; })
      .forEach(function (n) {
        var option = el('option', {value: String(n), text: String(n)});
        if (n === gallery.sample_steps) { option.selected = true; }
        ui.steps.appendChild(option);
      });
    ui.button = el('button', {type: 'button', id: 'tryit-run', 'class': 'tryit-run',
                              text: 'Dress the person'});
    ui.button.addEventListener('click', function () { run().catch(fail); });
    root.appendChild(el('div', {'class': 'tryit-controls'}, [
      el('label', {'for': 'tryit-seed', text: 'seed '}), ui.seed,
      el('label', {'for': 'tryit-guidance', text: ' guidance '}), ui.guidance, ui.guidanceValue,
      el('label', {'for': 'tryit-steps', text: ' DDIM steps '}), ui.steps, ui.button]));
    ui.progress = el('progress', {max: '1', value: '0', 'class': 'tryit-progress'});
    ui.stepLabel = el('span', {'class': 'tryit-step', text: ''});
    root.appendChild(el('div', {}, [ui.progress, ui.stepLabel]));
    var x0 = figure('estimate of x0, decoded');
    var result = figure('try-on (the model)');
    var paste = figure('warp + paste (no model)');
    ui.x0 = x0.canvas; ui.x0Caption = x0.box.querySelector('figcaption'); ui.result = result.canvas; ui.paste = paste.canvas;
    ui.result.id = 'tryit-result';
    root.appendChild(el('div', {'class': 'tryit-figures'}, [x0.box, result.box, paste.box]));
    root.appendChild(ui.status);
    choose('person', 0);
    choose('garment', 0);
    say('Pick a person and a garment, then press the button. The first press loads '
        + 'onnxruntime-web and the model (' + megabytes(total) + ' in all).');
    api.state = 'ready';
    root.setAttribute('data-state', 'ready');
  }

  function loadModel() {
    if (sessions) { return Promise.resolve(sessions); }
    var started = performance.now();
    say('Loading onnxruntime-web and the model \u2026');
    return loadScript('ort.js')
      .then(function () { return loadScript('ort-wasm.js'); })
      .then(function () { return loadScript('models.js'); })
      .then(function () {
        return Promise.all([gunzip(DATA.wasm.binary), gunzip(DATA.wasm.glue),
                            gunzip(DATA.models.denoise), gunzip(DATA.models.decode)]);
      })
      .then(function (parts) {
        var ort = window.ort;
        ort.env.wasm.numThreads = 1;  // no cross-origin isolation: one thread
        ort.env.wasm.proxy = false;
        ort.env.wasm.wasmBinary = parts[0];
        var glue = new Blob([parts[1]], {type: 'text/javascript'});
        ort.env.wasm.wasmPaths = {mjs: URL.createObjectURL(glue)};
        var options = {executionProviders: ['wasm'], graphOptimizationLevel: 'all'};
        return Promise.all([ort.InferenceSession.create(parts[2], options),
                            ort.InferenceSession.create(parts[3], options)]);
      })
      .then(function (made) {
        sessions = {denoise: made[0], decode: made[1]};
        api.loadMs = performance.now() - started;
        return sessions;
      });
  }

  function tensor(type, data, dims) { return new window.ort.Tensor(type, data, dims); }

  function nextFrame() { return new Promise(function (r) { setTimeout(r, 0); }); }

  function run() {
    var steps = Number(ui.steps.value), seed = Math.max(0, Math.floor(Number(ui.seed.value)));
    var guidance = Math.max(1, Number(ui.guidance.value));  // <= 1: no guidance, as the pipeline
    var table = gallery.scheduler.tables[String(steps)];
    var person = pick.person, garment = pick.garment;
    var pair = person * gallery.garments.length + garment;
    var h = gallery.size[0], w = gallery.size[1];
    var lat = arrays.noise.shape.slice(1);
    var n = lat[0] * lat[1] * lat[2];
    ui.button.disabled = true;
    api.state = 'running';
    root.setAttribute('data-state', 'running');
    return loadModel().then(function () {
      var latents = seed < gallery.noise_seeds ? Float32Array.from(item(arrays.noise, seed))
        : pageNoise(seed, n).map(function (v) {
          return v * gallery.scheduler.init_noise_sigma;
        });
      var dims = [1].concat(lat);
      var mdims = [1, 1, h, w];
      var fixed = {
        warped_latents: tensor('float32', item(arrays.warped_latents, pair), dims),
        agnostic_latents: tensor('float32', item(arrays.agnostic_latents, person), dims),
        clip_embeds: tensor('float32', item(arrays.clip_embeds, garment),
                            [1, arrays.clip_embeds.shape[1]]),
        warped_mask: tensor('float32', item(arrays.warped_mask, pair), mdims),
        guidance_scale: tensor('float32', Float32Array.from([guidance]), [1])
      };
      // the person conditions the model was trained with (DensePose, skin colour): per person,
      // or per pair where they hold as many rows as the pairs (the warp pasted into the skin)
      ['pose_latents', 'skin_latents'].forEach(function (name) {
        if (arrays[name]) {
          var row = arrays[name].shape[0] === arrays.warped_latents.shape[0] ? pair : person;
          fixed[name] = tensor('float32', item(arrays[name], row),
                               [1].concat(arrays[name].shape.slice(1)));
        }
      });
      var agnostic = tensor('float32', item(arrays.agnostic, person), [1, 3, h, w]);
      var agnosticMask = tensor('float32', item(arrays.agnostic_mask, person), mdims);
      function decode(z) {
        return sessions.decode.run({latents: tensor('float32', z, dims), agnostic: agnostic,
                                    agnostic_mask: agnosticMask})
          .then(function (out) { return out.image.data; });
      }
      // decoding costs about as much as a denoising step: the x0 estimate is shown about ten
      // times a run (every step up to 10 steps), always at the last step
      var every = Math.ceil(steps / 10), previews = 0;
      var started = performance.now(), modelMs = 0;
      ui.progress.max = steps;
      ui.progress.value = 0;
      var i = 0;
      function step() {
        if (i === steps) { return Promise.resolve(); }
        var t = table.timesteps[i];
        var feed = Object.assign({
          latents: tensor('float32', latents, dims),
          timestep: tensor('int64', BigInt64Array.from([BigInt(t)]), [1])
        }, fixed);
        var before = performance.now();
        return sessions.denoise.run(feed).then(function (out) {
          var eps = out.noise.data, next = new Float32Array(n), x0 = new Float32Array(n);
          var a = table.prev[i][0], b = table.prev[i][1];
          var c = table.x0[i][0], d = table.x0[i][1];
          for (var k = 0; k < n; k++) {
            next[k] = a * latents[k] + b * eps[k];
            x0[k] = c * latents[k] + d * eps[k];
          }
          latents = next;
          if ((i + 1) % every && i + 1 < steps) { return null; }
          previews += 1;
          return decode(x0);
        }).then(function (image) {
          modelMs += performance.now() - before;
          if (image) {
            draw(ui.x0, image, h, w, false);
            ui.x0Caption.textContent = 'estimate of x0 at step ' + (i + 1) + ', decoded';
          }
          i += 1;
          ui.progress.value = i;
          ui.stepLabel.textContent = ' step ' + i + ' / ' + steps + ' \u00b7 t = ' + t
            + ' \u00b7 \u221a\u1fb1_t = ' + table.sqrt_alpha_cumprod[i - 1].toFixed(3);
          return nextFrame().then(step);
        });
      }
      say('Sampling \u2026');
      return step().then(function () { return decode(latents); }).then(function (image) {
        draw(ui.result, image, h, w, false);
        var ms = performance.now() - started;
        api.last = {person: person, garment: garment, seed: seed, steps: steps,
                    guidance: guidance, ms: ms, modelMs: modelMs, loadMs: api.loadMs,
                    previews: previews,
                    pytorchNoise: seed < gallery.noise_seeds};
        say(steps + ' steps in ' + (ms / 1000).toFixed(2) + ' s ('
            + (ms / steps).toFixed(0) + ' ms a step, ' + previews + ' x0 previews included; '
            + 'loading took '
            + (api.loadMs / 1000).toFixed(2) + ' s). Seed ' + seed
            + (seed < gallery.noise_seeds ? ' starts from PyTorch\'s noise for that seed.'
              : ' draws its noise in the page.'));
        ui.button.disabled = false;
        api.state = 'done';
        root.setAttribute('data-state', 'done');
        return api.last;
      });
    });
  }

  if (!root) { return; }
  loadScript('manifest.js').then(function () {
    if (DATA.manifest.missing.length) { return null; }
    return loadScript('gallery.js').then(function () { return unpack(DATA.gallery.arrays); });
  }).then(function (unpacked) {
    if (unpacked) { gallery = DATA.gallery; arrays = unpacked; }
    build();
  }).catch(function (error) {
    root.textContent = 'The try-on could not start: ' + (error.message || error);
    api.state = 'error';
    root.setAttribute('data-state', 'error');
  });
})();
