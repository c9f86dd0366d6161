// The API's answers the pages read, as docs/api.md, docs/chat.md and the console contract
// describe them.

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface RoomSettings {
  publish_allow_cidrs: string[];
  stream_key_expires_at: number | null;
}

export interface Room {
  id: number;
  owner_id: number;
  title: string;
  is_live: boolean;
  disabled: boolean;
  login_required: boolean;
  viewer_count: number;
  chat_online?: number;
  /** In the details of one room: its live snapshot or newest recording's poster, if any. */
  cover_url?: string | null;
  hls_url: string;
  flv_url: string | null;
  created_at: number;
  settings?: RoomSettings;
}

export interface RoomWithKey {
  room: Room;
  stream_key: string;
  publish_url: string;
  kicked?: string;
  viewers_revoked?: boolean;
}

export interface RoomAfterKick {
  room: Room;
  kicked?: string;
  viewers_revoked: boolean;
}

export interface StreamItem {
  id: number;
  start_at: number;
  stop_at: number | null;
  is_live: boolean;
  record_url?: string | null;
}

export interface PlayToken {
  token: string;
  expires_at: number;
  expires_in: number;
  hls_url: string;
  flv_url: string | null;
}

export interface LiveRoom {
  room_id: number;
  title: string;
  owner: { id: number; username: string };
  started_at: number;
  uptime_s: number;
  publisher_addr: string | null;
  video: { codec: string; width: number; height: number } | null;
  audio: { codec: string } | null;
  bitrate_kbps: number | null;
  viewers: { flv: number; hls: number; chat: number };
  recording: string;
}

export interface LiveSnapshot {
  rooms: LiveRoom[];
}

export interface HistoryPoint {
  at: number;
  viewers: number;
  bitrate_kbps: number | null;
}

export interface RoomHistory {
  interval_s: number;
  points: HistoryPoint[];
}

export interface Recording {
  id: number;
  room_id: number;
  stream_id: number | null;
  state: string;
  error: string | null;
  size_bytes: number | null;
  duration_ms: number | null;
  created_at: number;
  updated_at: number;
  object_key: string | null;
  download_url: string | null;
}

export interface Order {
  id: number;
  user_id: number;
  room_id: number;
  gift_id: number;
  amount: number;
  currency: string;
  status: string;
  payment_reference: string | null;
  created_at: number;
  updated_at: number;
}

export interface PaymentCallback {
  id: number;
  provider: string;
  event_id: string;
  order_id: number | null;
  outcome: string;
  reason: string | null;
  received_at: number;
}

export interface HealthCheck {
  name: string;
  ok: boolean;
  detail: string;
  latency_ms: number | null;
}

export interface Health {
  checks: HealthCheck[];
  proxy: Record<string, number | null> | null;
  hooks: Record<string, number | null> | null;
  recorder: Record<string, number | null> | null;
}

export interface AuditEntry {
  id: number;
  at: number;
  actor: { id: number; username: string; role: string } | null;
  action: string;
  target: string;
  status: number | string;
  detail: string | null;
}

export interface Gift {
  id: number;
  name: string;
  price: number;
  currency: string;
  active: boolean;
}
