// "Forget everything" asks once more before the form goes (the server also needs the ticked box).
document.querySelectorAll("button[data-confirm]").forEach(function (button) {
  button.form.addEventListener("submit", function (ev) {
    if (ev.submitter === button && !window.confirm(button.getAttribute("data-confirm"))) ev.preventDefault();
  });
});
