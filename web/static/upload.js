// Drag and drop onto the upload form; the plain file input works without this script.
(function () {
  "use strict";
  var zone = document.getElementById("dropzone");
  var input = document.getElementById("images");
  var list = document.getElementById("chosen");
  if (!zone || !input) { return; }

  function showChosen() {
    list.textContent = "";
    Array.prototype.forEach.call(input.files, function (file) {
      var item = document.createElement("li");
      item.textContent = file.name + " (" + Math.ceil(file.size / 1024) + " kB)";
      list.appendChild(item);
    });
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showChosen();
    }
  });
  input.addEventListener("change", showChosen);

  // The sample buttons use the pipeline chosen above them.
  function syncPipeline() {
    var checked = document.querySelector("#upload-form input[name=pipeline]:checked");
    document.querySelectorAll(".sample-pipeline").forEach(function (field) {
      if (checked) { field.value = checked.value; }
    });
  }
  document.querySelectorAll("#upload-form input[name=pipeline]").forEach(function (radio) {
    radio.addEventListener("change", syncPipeline);
  });
  syncPipeline();
}());
