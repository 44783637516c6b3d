// The live page: follows the request's event stream and lists each stage as it finishes.
// Every string from the server is untrusted (prompts, gap values, search queries): it goes in with textContent,
// never as markup.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root) return;
  var list = document.getElementById("stages");
  var status = document.getElementById("live-status");
  var drafts = document.getElementById("drafts");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function addImages(urls) {
    (urls || []).forEach(function (src) {
      if (typeof src !== "string" || src.indexOf("/image?") !== 0) return; // only the image store's own route
      if (drafts.querySelector('img[src="' + CSS.escape(src) + '"]')) return;
      var img = new Image();
      img.src = src;
      img.alt = "draft";
      drafts.appendChild(img);
    });
  }

  var source = new EventSource(root.getAttribute("data-events"));
  source.addEventListener("stage", function (ev) {
    var d = JSON.parse(ev.data);
    var li = el("li", "stage");
    li.setAttribute("data-stage", d.stage);
    li.appendChild(el("span", "stage-name", d.stage));
    li.appendChild(el("span", "stage-text", d.text));
    li.appendChild(el("span", "stage-time", (d.t || 0).toFixed(1) + " s"));
    if (d.gaps && d.gaps.length) {
      var ul = el("ul", "gap-list");
      d.gaps.forEach(function (g) {
        ul.appendChild(el("li", null, g.kind + " · " + g.strategy + " · " + g.status + ": " + g.description +
          (g.value ? " → " + g.value : "")));
      });
      li.appendChild(ul);
    }
    if (d.searches && d.searches.length) {
      var su = el("ul", "search-list");
      d.searches.forEach(function (s) {
        su.appendChild(el("li", null, "search “" + s.query + "” on " + s.backend + ": " + s.hits + " hit(s)" +
          (s.error ? " — " + s.error : "")));
      });
      li.appendChild(su);
    }
    if (d.prompt) li.appendChild(el("p", "prompt", d.prompt));
    if (d.stage === "generator" || d.stage === "critic") addImages(d.images);
    list.appendChild(li);
    status.textContent = d.stage === "dead letter" ? "a stage could not process the request" : d.stage + " done";
  });
  source.addEventListener("result", function (ev) {
    var d = JSON.parse(ev.data);
    source.close();
    var words = {completed: "Done!", needs_clarification: "A question for you", failed: "Failed", expired: "Expired"};
    status.textContent = (words[d.status] || d.status) + (d.text ? " — " + d.text : "") + ". Opening the result…";
    status.className = "status done status-" + d.status;
    status.setAttribute("data-status", d.status);
    if (typeof d.url === "string" && d.url.indexOf("/u/") === 0) {
      setTimeout(function () { window.location.href = d.url; }, 2000);  // time to read "Done"
    }
  });
  source.onerror = function () {
    if (source.readyState !== EventSource.CLOSED) status.textContent = "connection lost, reconnecting…";
  };
})();
