// Images attached to chat messages: what type a base64 image is (for its thumbnail), reading a
// pasted image, and whether a model can read images at all (a `projector` layer).
import type { ModelDetails } from './api';

/** Ollama's media type of a vision projector layer (an mmproj GGUF). */
export const PROJECTOR_MEDIA_TYPE = 'application/vnd.ollama.image.projector';

/** True when the model has a vision projector, so it reads the images of a message. */
export function modelReadsImages(model: Pick<ModelDetails, 'layers'> | null | undefined): boolean {
  return !!model?.layers?.some((l) => l.media_type === PROJECTOR_MEDIA_TYPE);
}

/** The MIME type of base64 image data from its first bytes (PNG, JPEG, GIF, BMP, WebP). */
export function imageMime(base64: string): string {
  if (base64.startsWith('iVBOR')) return 'image/png';
  if (base64.startsWith('/9j/')) return 'image/jpeg';
  if (base64.startsWith('R0lG')) return 'image/gif';
  if (base64.startsWith('Qk')) return 'image/bmp';
  if (base64.startsWith('UklGR')) return 'image/webp';
  return 'application/octet-stream';
}

/** A data URL to show base64 image data. */
export function imageUrl(base64: string): string {
  return `data:${imageMime(base64)};base64,${base64}`;
}

/** Pasted or picked image files larger than this are refused (the projector scales them down anyway). */
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;

/** Reads an image file (a paste) as base64; rejects what is not an image or too large. */
export function fileToBase64(file: Blob): Promise<string> {
  if (!file.type.startsWith('image/')) return Promise.reject(new Error('only images can be attached'));
  if (file.size > MAX_IMAGE_BYTES) return Promise.reject(new Error(`the image is ${Math.round(file.size / 1048576)} MB; up to 20 MB can be attached`));
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => {
      const url = String(r.result ?? '');
      resolve(url.slice(url.indexOf(',') + 1));
    };
    r.onerror = () => reject(r.error ?? new Error('the image could not be read'));
    r.readAsDataURL(file);
  });
}
