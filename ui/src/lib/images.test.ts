import { describe, expect, it } from 'vitest';
import { imageMime, imageUrl, modelReadsImages, PROJECTOR_MEDIA_TYPE } from './images';
import { appendTurn, buildChatMessages, newConversation } from './conversation';

describe('images', () => {
  it('a model reads images only with a projector layer', () => {
    const layer = (media_type: string) => ({ media_type, digest: 'sha256:x', size: 1 });
    expect(modelReadsImages({ layers: [layer('application/vnd.ollama.image.model'), layer(PROJECTOR_MEDIA_TYPE)] })).toBe(true);
    expect(modelReadsImages({ layers: [layer('application/vnd.ollama.image.model')] })).toBe(false);
    expect(modelReadsImages(null)).toBe(false);
  });

  it('thumbnails get the type the bytes say', () => {
    expect(imageMime('iVBORw0KGgo=')).toBe('image/png');
    expect(imageMime('/9j/4AAQ')).toBe('image/jpeg');
    expect(imageMime('Qk02AAAA')).toBe('image/bmp');
    expect(imageUrl('R0lGODlh')).toBe('data:image/gif;base64,R0lGODlh');
  });

  it('a message sent with images carries them to the model, and one without does not', () => {
    const c = newConversation('see');
    const { conversation } = appendTurn(c, 'What is this?', undefined, ['iVBORw0KGgo=']);
    const second = appendTurn(conversation, 'And now?').conversation;
    const wire = buildChatMessages('', second.messages);
    expect(wire[0]).toEqual({ role: 'user', content: 'What is this?', images: ['iVBORw0KGgo='] });
    expect(wire.at(-1)).toEqual({ role: 'user', content: 'And now?' });
  });
});
