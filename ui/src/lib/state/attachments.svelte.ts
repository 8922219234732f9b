// The images waiting to go with the next message (pasted into the composer or dropped on the
// window); sending takes them.
export interface PendingImage {
  id: number;
  name: string;
  /** base64 */
  data: string;
}

class Attachments {
  images = $state<PendingImage[]>([]);
  /** Why the last image could not be attached, shown under the thumbnails. */
  problem = $state<string | null>(null);
  private next = 1;

  add(name: string, data: string): void {
    this.images = [...this.images, { id: this.next++, name, data }];
    this.problem = null;
  }

  remove(id: number): void {
    this.images = this.images.filter((i) => i.id !== id);
  }

  /** The images' data for sending; the tray is empty afterwards. */
  take(): string[] {
    const data = this.images.map((i) => i.data);
    this.images = [];
    this.problem = null;
    return data;
  }
}

export const attachments = new Attachments();
