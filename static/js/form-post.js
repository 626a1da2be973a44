// OAuth 2.0 Form Post Response Mode: submit the hidden form to the client at once.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("form-post");
  if (form) {
    form.submit();
  }
});
