// webvar-widget.js: embed the webvar demo in any page with one script tag and one element per image.
//
//   <script src="https://host/webvar-widget.js" defer></script>
//   <div data-webvar data-weights="weights/" data-class="7" data-seed="3" data-autostart></div>
//
// Every [data-webvar] element gets an <iframe> of the demo page in embed mode (index.html?embed=1&...),
// sized to the element: each widget has its own wasm instance and page state, and nothing of the app
// leaks into the host page. Attributes (all optional): data-weights or data-model (a converted weights
// directory, resolved against the host page; default: the server's weights/), data-class, data-seed,
// data-autostart (present: generate once loaded), and the model family's settings by name: data-cfg,
// data-top-k, data-top-p, data-more-smooth (VAR), data-schedule, data-aspect, data-cfg-mode, data-max-pn
// (FlexVAR),
// data-width / data-height (CSS sizes; default: the element's own size, else 320px x 400px).
// Editing (models that edit): data-image (an image URL, resolved against the host page; the host must
// serve it to the app's origin, CORS), data-mask (a mask image URL: white = regenerate) or data-box
// ("y0,x0,y1,x1" in fractions), data-edit (inpaint, outpaint, refine, expand, complete), data-keep (steps or
// rows kept), data-no-class (present: in-paint without a class); with data-autostart the edit runs once
// the image has loaded.
// The app posts {type: "webvar-state", state, error} to this page; the widget mirrors it on the host
// element (dataset.state: loading, cancelled, ready, generating, done, error; dataset.error) and dispatches a
// "webvar-state" CustomEvent on it with that object as detail.
// Hand-written, no build step: it must stay small and readable.
(function () {
  "use strict";
  // The app is served next to this script: resolve the page against the script's own URL, so that a
  // host page on another origin still finds it.
  var script = document.currentScript;
  var base = script && script.src ? script.src : document.baseURI;
  var appURL = new URL("./", base);
  // Attributes that are not settings; every other data-* attribute is passed on as a setting (data-top-k
  // as top_k=...), which the app checks against the model's own settings.
  var own = {webvar: 1, webvarMounted: 1, weights: 1, model: 1, autostart: 1, width: 1, height: 1, state: 1, error: 1,
    image: 1, mask: 1, noClass: 1};

  function mount(el) {
    if (el.dataset.webvarMounted) return;
    el.dataset.webvarMounted = "1";
    var d = el.dataset;
    var u = new URL(appURL);
    u.searchParams.set("embed", "1");
    for (var k in d) {
      if (own[k] || d[k] === "") continue;
      // dataset names are camelCase: topK -> top_k, cfgMode -> cfg_mode.
      u.searchParams.set(k.replace(/[A-Z]/g, function (c) { return "_" + c.toLowerCase(); }), d[k]);
    }
    const w = d.weights || d.model; // data-model is accepted as another name for data-weights
    if (w) u.searchParams.set("weights", new URL(w, document.baseURI).href);
    if (d.autostart !== undefined && d.autostart !== "false") u.searchParams.set("autostart", "1");
    if (d.image) u.searchParams.set("image", new URL(d.image, document.baseURI).href);
    if (d.mask) u.searchParams.set("mask", new URL(d.mask, document.baseURI).href);
    if (d.noClass !== undefined && d.noClass !== "false") u.searchParams.set("no_class", "1");
    var f = document.createElement("iframe");
    f.src = u.href;
    f.title = "webvar image generator";
    f.style.border = "0";
    f.style.display = "block";
    f.style.width = d.width || (el.clientWidth ? "100%" : "320px");
    f.style.height = d.height || (el.clientHeight ? "100%" : "400px");
    el.dataset.state = "loading";
    el.appendChild(f);
    window.addEventListener("message", function (ev) {
      // Only this widget's own frame: every widget listens on the same window.
      if (ev.source !== f.contentWindow || !ev.data || ev.data.type !== "webvar-state") return;
      el.dataset.state = ev.data.state;
      if (ev.data.error) el.dataset.error = ev.data.error;
      else delete el.dataset.error;
      el.dispatchEvent(new CustomEvent("webvar-state", {detail: ev.data}));
    });
  }

  function mountAll() {
    var els = document.querySelectorAll("[data-webvar]");
    for (var i = 0; i < els.length; i++) mount(els[i]);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
  // Pages that add elements later can call webvarWidget.mount(el) or webvarWidget.mountAll().
  window.webvarWidget = {mount: mount, mountAll: mountAll};
})();
