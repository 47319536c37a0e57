// S2V Studio: the little the pages need beyond htmx.
(function () {
  "use strict";

  // What `box` shows becomes one alert paragraph (nothing happens without a box).
  function alertIn(box, className, text) {
    if (!box) return;
    var p = document.createElement("p");
    p.className = className;
    p.setAttribute("role", "alert");
    p.textContent = text;
    box.replaceChildren(p);
  }

  function showAlert(text) {
    alertIn(document.getElementById("alerts"), "alert alert-error", text);
  }

  function verdictMessage(input, text) {
    alertIn(document.querySelector(input.dataset.verdict), "verdict-fail", text);
  }

  // A local preview of the chosen portrait, before any upload.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "file") return;
    var button = document.getElementById("generate-button");
    if (button && input.dataset.verdict) button.disabled = true;
    if (input.dataset.preview) {
      var img = document.querySelector(input.dataset.preview);
      if (img && input.files && input.files[0]) {
        if (img.src) URL.revokeObjectURL(img.src);
        img.src = URL.createObjectURL(input.files[0]);
        img.hidden = false;
      }
    }
  });

  // Refuse an oversized file before sending it; the server checks again.
  document.addEventListener("htmx:confirm", function (event) {
    var input = event.detail.elt;
    if (!(input instanceof HTMLInputElement) || input.type !== "file") return;
    var max = Number(input.dataset.maxBytes || 0);
    var file = input.files && input.files[0];
    if (!file) { event.preventDefault(); return; }
    if (max && file.size > max) {
      event.preventDefault();
      verdictMessage(input, "The file is " + Math.round(file.size / 1048576) +
        " MB; uploads are limited to " + Math.round(max / 1048576) + " MB. Choose a smaller file.");
    }
  });

  // Polling pauses while the tab is hidden: a hidden tab sends no status requests.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var trigger = event.detail.elt.getAttribute("hx-trigger") || "";
    if (document.hidden && trigger.indexOf("every ") === 0) event.preventDefault();
  });

  // Selects that act at once (the team switcher) without inline handlers.
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select instanceof HTMLSelectElement && select.hasAttribute("data-submit-on-change")) {
      select.form.requestSubmit();
    }
  });

  // Gallery cards: hovering plays a muted preview, leaving pauses it. A video
  // someone started with its own controls (or unmuted) is left alone.
  document.addEventListener("mouseenter", function (event) {
    var card = event.target;
    if (!(card instanceof Element) || !card.matches("article.card")) return;
    var video = card.querySelector("video[data-hover-preview]");
    if (!video || !video.paused) return;
    video.muted = true;
    video.dataset.hoverPlaying = "1";
    var playing = video.play();
    if (playing && playing.catch) playing.catch(function () {});
  }, true);
  document.addEventListener("mouseleave", function (event) {
    var card = event.target;
    if (!(card instanceof Element) || !card.matches("article.card")) return;
    var video = card.querySelector("video[data-hover-preview]");
    if (!video || !video.dataset.hoverPlaying) return;
    delete video.dataset.hoverPlaying;
    if (video.muted) video.pause();
  }, true);
  // Controls used during a hover preview make it the viewer's own playback.
  document.addEventListener("volumechange", function (event) {
    var video = event.target;
    if (video instanceof HTMLVideoElement && !video.muted) delete video.dataset.hoverPlaying;
  }, true);

  // "Copy" beside a share link. Without the Clipboard API (plain http on another
  // host), select the link so the usual shortcut copies it.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element && event.target.closest("[data-copy]");
    if (!button) return;
    var field = button.parentElement && button.parentElement.querySelector(".share-url");
    if (!navigator.clipboard) {
      if (field) field.select();
      return;
    }
    navigator.clipboard.writeText(button.dataset.copy).then(function () {
      button.textContent = "Copied";
    }, function () {
      if (field) field.select();
    });
  });

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    if (status === 403) {
      showAlert("Your session has expired. Reload the page and sign in again; nothing was lost.");
    } else if (status === 404) {
      showAlert("That item no longer exists, or it belongs to another team.");
    } else {
      showAlert("The studio could not finish that request (HTTP " + status + "). Try again in a moment.");
    }
  });
  document.addEventListener("htmx:sendError", function () {
    showAlert("The studio cannot be reached. Check your connection; the page will catch up when it is back.");
  });
})();
