//! Images in conversations, on the engine's side: where each message's images go in its text
//! (as Ollama places them) and which images a rendered prompt carries. The runner turns each
//! marker into the image's tokens (`runner::vision`); nothing here decodes an image.

use super::template::ChatMessage;

/// What marks an image's place in a rendered prompt: llama.cpp's default media marker, which the
/// runner's projector context is created with.
pub const IMAGE_MARKER: &str = "<__media__>";

/// Where a message's images go when its text has no `[img]` placeholder: before the text, as
/// Ollama puts them. With placeholders, each `[img]` takes the next image.
const PLACEHOLDER: &str = "[img]";

/// [`IMAGE_MARKER`] as it reads, with a zero-width space that keeps it from being one.
const INERT_MARKER: &str = "<\u{200B}__media__>";

/// Puts one [`IMAGE_MARKER`] per image into the text of each message that has images (the
/// images stay on the message, for [`images_kept`]). A marker already in a message's text is
/// text from outside: it is broken up (with a zero-width space) so that it takes no image's place.
pub fn place_images(messages: &mut [ChatMessage]) {
    for m in messages.iter_mut() {
        if m.content.contains(IMAGE_MARKER) {
            m.content = m.content.replace(IMAGE_MARKER, INERT_MARKER);
        }
        let mut prefix = String::new();
        for _ in &m.images {
            if m.content.contains(PLACEHOLDER) {
                m.content = m.content.replacen(PLACEHOLDER, IMAGE_MARKER, 1);
            } else {
                prefix.push_str(IMAGE_MARKER);
            }
        }
        m.content.insert_str(0, &prefix);
    }
}

/// The images still in a prompt from which the chat layer dropped the `dropped` oldest
/// messages (the first non-system ones), in prompt order.
pub fn images_kept(messages: &[ChatMessage], dropped: usize) -> Vec<String> {
    let mut skip = dropped;
    let mut images = Vec::new();
    for m in messages {
        if skip > 0 && m.role != "system" {
            skip -= 1;
            continue;
        }
        images.extend(m.images.iter().cloned());
    }
    images
}

/// True when any message carries an image.
pub fn has_images(messages: &[ChatMessage]) -> bool {
    messages.iter().any(|m| !m.images.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str, images: &[&str]) -> ChatMessage {
        ChatMessage { images: images.iter().map(|s| s.to_string()).collect(), ..ChatMessage::new("user", text) }
    }

    #[test]
    fn images_go_before_the_text_or_at_each_placeholder_in_order() {
        let mut messages = vec![user("What is this?", &["A"]), ChatMessage::new("assistant", "A cat."), user("Compare [img] with [img].", &["B", "C"])];
        place_images(&mut messages);
        assert_eq!(images_kept(&messages, 0), ["A", "B", "C"]);
        assert_eq!(messages[0].content, "<__media__>What is this?");
        assert_eq!(messages[1].content, "A cat.");
        assert_eq!(messages[2].content, "Compare <__media__> with <__media__>.");
        let mut two = vec![user("Both:", &["A", "B"])];
        place_images(&mut two);
        assert_eq!(two[0].content, "<__media__><__media__>Both:");
    }

    #[test]
    fn marker_text_from_outside_takes_no_image_place() {
        let mut messages = vec![user("<__media__> is how images are marked", &[]), user("Here: <__media__>", &["A"])];
        place_images(&mut messages);
        assert_eq!(messages[0].content, format!("{INERT_MARKER} is how images are marked"));
        assert_eq!(messages[1].content, format!("<__media__>Here: {INERT_MARKER}"));
        assert_eq!(messages.iter().map(|m| m.content.matches(IMAGE_MARKER).count()).sum::<usize>(), images_kept(&messages, 0).len());
    }

    #[test]
    fn dropped_messages_take_their_images_with_them() {
        let messages = vec![ChatMessage::new("system", "s"), user("old", &["A"]), ChatMessage::new("assistant", "a"), user("new", &["B"])];
        assert_eq!(images_kept(&messages, 2), ["B"]);
        assert_eq!(images_kept(&messages, 1), ["B"]);
        assert_eq!(images_kept(&messages, 0), ["A", "B"]);
    }
}
