/*
 * "Recommended for this basket": a storefront widget over POST {list}/recommendations/.
 *
 * Keeps the shopper's history (views, cart, purchases) in localStorage and shows what the
 * similarity API recommends for it. Plain JavaScript, no framework; include it with
 * {% static "similarity/recommendations.js" %} and mark up the page:
 *
 *   <div data-similarity-recommendations data-endpoint="/api/products/recommendations/" data-k="8"></div>
 *   <button data-similarity-add="12" data-title="Green tea">Add to basket</button>   (role "cart")
 *   <div data-similarity-viewed="12" data-title="Green tea"></div>   (a product page: role "viewed")
 *   <ul data-similarity-basket></ul>   <button data-similarity-clear>Empty</button>
 *
 * Item titles and photos are written with textContent and checked URLs, never as HTML.
 * window.similarityHistory offers add(id, role, title), clear(), entries() and refresh().
 */
(function () {
  "use strict";

  var KEY = "similarity-history";
  var MAX = 50; // SIMILARITY["MAX_HISTORY"]'s default: the API refuses longer histories

  function entries() {
    try {
      var found = JSON.parse(window.localStorage.getItem(KEY) || "[]");
      return Array.isArray(found) ? found.filter(function (e) { return e && Number.isInteger(e.id) && e.id > 0; }) : [];
    } catch (err) {
      return [];
    }
  }

  function save(history) {
    try {
      window.localStorage.setItem(KEY, JSON.stringify(history.slice(-MAX)));
    } catch (err) { /* storage full or disabled: the page still works without a history */ }
  }

  function add(id, role, title) {
    id = parseInt(id, 10);
    if (!(id > 0)) return;
    var history = entries().filter(function (e) { return !(e.id === id && e.role === role); });
    history.push({ id: id, role: role, title: String(title || ""), at: new Date().toISOString() });
    save(history);
    refresh();
  }

  function clear() {
    save([]);
    refresh();
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function safeUrl(url) {
    try {
      var parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : "";
    } catch (err) {
      return "";
    }
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function titleOf(item) {
    return String(item.title || item.name || item.sku || ("#" + item.id));
  }

  function renderBasket(container, history) {
    container.replaceChildren();
    history.forEach(function (e) {
      container.appendChild(element("li", "similarity-basket-entry", (e.title || "#" + e.id) + " (" + e.role + ")"));
    });
  }

  function renderResults(container, body, history) {
    var titles = {};
    history.forEach(function (e) { titles[e.id] = e.title; });
    container.replaceChildren();
    if (!body.results.length) {
      container.appendChild(element("p", "similarity-empty", container.dataset.empty || "Nothing to recommend yet."));
      return;
    }
    body.results.forEach(function (row) {
      var card = element("div", "similarity-card");
      card.dataset.id = row.item.id;
      var url = safeUrl(row.item.image || "");
      if (url) {
        var img = element("img", "similarity-card-image");
        img.src = url;
        img.alt = titleOf(row.item);
        img.loading = "lazy";
        card.appendChild(img);
      }
      card.appendChild(element("div", "similarity-card-title", titleOf(row.item)));
      var because = titles[row.because.id] || ("#" + row.because.id);
      card.appendChild(element("div", "similarity-card-why", "like " + because));
      container.appendChild(card);
    });
  }

  function refresh() {
    var history = entries();
    document.querySelectorAll("[data-similarity-basket]").forEach(function (c) { renderBasket(c, history); });
    document.querySelectorAll("[data-similarity-recommendations]").forEach(function (container) {
      if (!history.length) {
        container.replaceChildren(element("p", "similarity-empty", container.dataset.empty || "Nothing to recommend yet."));
        return;
      }
      var request = {
        history: history.map(function (e) { return { id: e.id, role: e.role, at: e.at }; }),
        k: parseInt(container.dataset.k || "8", 10)
      };
      // Only the latest request may write: an earlier answer arriving late is dropped.
      var sequence = (container.similaritySequence || 0) + 1;
      container.similaritySequence = sequence;
      var latest = function () { return container.similaritySequence === sequence; };
      container.setAttribute("aria-busy", "true");
      fetch(container.dataset.endpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(request)
      })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (body) { if (latest()) renderResults(container, body, history); })
        .catch(function () {
          if (latest()) {
            container.replaceChildren(element("p", "similarity-error", container.dataset.error || "Recommendations are unavailable right now."));
          }
        })
        .finally(function () { if (latest()) container.removeAttribute("aria-busy"); });
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-similarity-add], [data-similarity-clear]");
    if (!button) return;
    event.preventDefault();
    if (button.hasAttribute("data-similarity-clear")) clear();
    else add(button.dataset.similarityAdd, button.dataset.role || "cart", button.dataset.title);
  });

  function start() {
    var viewed = document.querySelector("[data-similarity-viewed]");
    if (viewed) add(viewed.dataset.similarityViewed, "viewed", viewed.dataset.title);
    else refresh();
  }

  window.similarityHistory = { add: add, clear: clear, entries: entries, refresh: refresh };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
