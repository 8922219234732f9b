//! Images in the chat window, with the test model (it has no vision projector): an image pasted
//! into the window shows as a thumbnail, the window says this model cannot read it and holds
//! the message back, and removing the image lets the message go again.

use super::*;

/// A 1×1 PNG.
const PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// Pastes an image into the message box as the clipboard would (a paste event carrying a file).
async fn paste_image(c: &Client) {
    let script = format!(
        r#"const bytes = Uint8Array.from(atob("{PIXEL_PNG}"), (ch) => ch.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "pixel.png", {{ type: "image/png" }}));
        let ev = null;
        try {{ ev = new ClipboardEvent("paste", {{ clipboardData: dt, bubbles: true, cancelable: true }}); }} catch (e) {{}}
        if (!ev || !ev.clipboardData) {{ ev = new Event("paste", {{ bubbles: true, cancelable: true }}); Object.defineProperty(ev, "clipboardData", {{ value: dt }}); }}
        document.querySelector("[data-testid='chat-input']").dispatchEvent(ev);
        return true;"#
    );
    c.execute(&script, vec![]).await.unwrap();
}

/// On the Chat page with `model` (no projector) chosen and the message box empty.
pub async fn a_pasted_image_needs_a_vision_model(c: &Client, model: &str) {
    paste_image(c).await;
    wait_for(c, "[data-testid='image-thumb']").await;
    let warning = wait_for(c, "[data-testid='image-unsupported']").await.text().await.unwrap();
    assert!(warning.contains(&format!("{model} cannot read images")), "the window says the model cannot read images: {warning}");
    wait_for(c, "[data-testid='chat-input']").await.send_keys("What is this?").await.unwrap();
    let send = wait_for(c, "[data-testid='send']").await;
    assert!(!send.is_enabled().await.unwrap(), "a message with images is held back for a model without a projector");
    screenshot(c, "image-attached").await;
    click(c, "[aria-label='Remove pixel.png']").await;
    wait_until(c, "the image is removed", "return !document.querySelector(\"[data-testid='image-thumb']\") && !document.querySelector(\"[data-testid='image-unsupported']\");").await;
    assert!(wait_for(c, "[data-testid='send']").await.is_enabled().await.unwrap(), "without the image the message can go");
    // Leave the message box as it was.
    c.execute("const t = document.querySelector(\"[data-testid='chat-input']\"); t.value = ''; t.dispatchEvent(new Event('input', { bubbles: true })); return true;", vec![]).await.unwrap();
}
