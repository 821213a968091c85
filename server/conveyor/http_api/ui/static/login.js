// Sign-in: the key goes in the body of one POST, and comes back as an HttpOnly session cookie.
import { byId, showError } from "./common.js";

byId("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = byId("key");
  const errorBox = byId("sign-in-error");
  errorBox.hidden = true;
  let response;
  try {
    response = await fetch("/ui/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ key: input.value.trim() }),
    });
  } catch {
    showError(errorBox, { code: "NETWORK_ERROR", message: "Conveyor could not be reached; is it running?" });
    return;
  }
  input.value = "";
  if (response.ok) {
    location.assign("/ui");
    return;
  }
  const data = await response.json().catch(() => null);
  showError(errorBox, (data && data.error) || { code: `HTTP_${response.status}`, message: "Sign-in failed" });
  input.focus();
});
