// Types of ferry-client (index.js).
import type { Metadata, status as GrpcStatus } from '@grpc/grpc-js';

export interface ClientOptions {
  /** HOST:PORT; default FERRY_BROKER, else 127.0.0.1:7420 */
  address?: string;
  /** bearer token; default FERRY_TOKEN */
  token?: string;
  /** PEM file of the broker certificate's CA (TLS); default FERRY_TLS_CA */
  tlsCa?: string;
  /** PEM client certificate and key (mutual TLS); default FERRY_TLS_CLIENT_CERT / _KEY */
  tlsClientCert?: string;
  tlsClientKey?: string;
  /** name expected in the broker's certificate; default FERRY_TLS_SERVER_NAME */
  tlsServerName?: string;
  /** deadline of each call; default 30000 */
  timeoutMs?: number;
  keepaliveMs?: number;
}

export interface PublishOptions {
  key?: string;
  headers?: Record<string, string>;
  /** generated when not given: a retried batch is never stored twice */
  dedupId?: string;
  delayMs?: number;
  deliverAt?: Date;
}

export interface PublishResult {
  queue: number;
  /** uint64 as a decimal string */
  offset: string;
  duplicate: boolean;
  delayed: boolean;
  delayedId: string;
  dedupId: string;
}

export interface PublisherSettings {
  maxMessages?: number;
  maxBytes?: number;
  maxLatencyMs?: number;
  maxInFlight?: number;
  lanes?: number;
  retryForMs?: number;
}

export class Publisher {
  publish(topic: string, payload: Buffer | string, options?: PublishOptions): Promise<PublishResult>;
  flush(): Promise<void>;
  close(): Promise<void>;
  /** After a failed keyed batch its keys are paused (FAILED_PRECONDITION) until resumed. */
  resumePublish(topic: string, key: string): void;
}

export interface Message {
  topic: string;
  queue: number;
  offset: string;
  key: string;
  payload: Buffer;
  headers: Record<string, string>;
  deliveryAttempt: number;
  producedAt: Date;
  receipt: string;
  /** the outbox id (header ferry-outbox-id), else topic/queue/offset */
  readonly id: string;
}

/** A message from client.messages(): settle it explicitly, or it is ACKed when the loop moves on. */
export interface IteratedMessage extends Message {
  ack(): void;
  retry(reason?: string, delayMs?: number): void;
  deadLetter(reason: string): void;
}

export interface SubscribeSettings {
  maxOutstandingMessages?: number;
  maxOutstandingBytes?: number;
  concurrency?: number;
  leaseMs?: number;
  maxLeaseExtensionMs?: number;
  maxWaitMs?: number;
  /** undefined: ask the broker whether the group or topic is ordered */
  ordered?: boolean;
  startPosition?: 'earliest' | 'latest';
}

export interface SubscriberStats {
  received: number;
  acked: number;
  retried: number;
  deadLettered: number;
  released: number;
  staleReceipts: number;
  invalidReceipts: number;
  leaseExtensions: number;
  handlerErrors: number;
  maxOutstandingSeen: number;
}

export class Subscription {
  readonly stats: SubscriberStats;
  /** why it stopped on its own (a non-retryable Consume error), else null */
  readonly error: FerryError | null;
  readonly outstanding: number;
  stop(timeoutMs?: number): Promise<void>;
}

export interface TransactionCheck {
  check_id: string;
  transaction_id: string;
  check_ref: string;
  producer_group: string;
  topics: string[];
  message_count: number;
  messages: Array<{ key: string; payload: Buffer; headers: Record<string, string>; dedup_id: string }>;
  check_number: number;
}

export type CheckAnswer = boolean | null | undefined | 'commit' | 'rollback' | 'unknown';

export class Checker {
  readonly connects: number;
  readonly checks: number;
  readonly connected: boolean;
  whenConnected(): Promise<void>;
  stop(): Promise<void>;
}

export class Transaction {
  readonly id: string;
  readonly producerGroup: string;
  readonly state: string | null;
  publish(topic: string, messages: (PublishOptions & { payload: Buffer | string }) | Array<PublishOptions & { payload: Buffer | string }>): Promise<PublishResult[]>;
  ack(group: string, messages: Message | string | Array<Message | string>): Promise<void>;
  commit(): Promise<number>;
  rollback(): Promise<number>;
}

export class Admin {
  createTopic(name: string, options?: { queues?: number; retentionMs?: number; dedupWindowMs?: number; ordered?: boolean; existOk?: boolean }): Promise<any>;
  listTopics(): Promise<any[]>;
  deleteTopic(name: string): Promise<void>;
  createGroup(name: string, options?: { topics?: string[]; maxDeliveryAttempts?: number; backoffMs?: number[]; ordered?: boolean; startPosition?: 'earliest' | 'latest' }): Promise<any>;
  lag(group: string, topic?: string): Promise<any>;
  deadLetters(group: string, topic?: string): Promise<Array<{ id: string; payload: Buffer; reason: string; attempts: number; [field: string]: any }>>;
  redriveDeadLetters(group: string, options?: { ids?: Array<number | string>; all?: boolean; toTopic?: string }): Promise<any>;
  transactions(options?: { state?: string; producerGroup?: string; limit?: number }): Promise<any[]>;
  resolveTransaction(transactionId: string, decision: 'commit' | 'rollback', reason: string): Promise<string>;
}

export class Client {
  constructor(options?: ClientOptions);
  readonly address: string;
  readonly broker: any;
  readonly adminStub: any;
  readonly admin: Admin;
  metadata(): Metadata;
  call(stub: any, method: string, request: object, timeoutMs?: number): Promise<any>;
  callWithRetry(stub: any, method: string, request: object, retryForMs?: number): Promise<any>;
  publisher(settings?: PublisherSettings): Publisher;
  subscribe(topic: string, group: string, handler: (m: Message) => Promise<void> | void, settings?: SubscribeSettings): Subscription;
  messages(topic: string, group: string, settings?: SubscribeSettings): AsyncGenerator<IteratedMessage, void, undefined>;
  beginTransaction(producerGroup: string, options?: { checkRef?: string; timeoutMs?: number }): Promise<Transaction>;
  onCheck(producerGroups: string | string[], handler: (check: TransactionCheck) => CheckAnswer | Promise<CheckAnswer>, checkerId?: string): Checker;
  close(): void;
}

export class FerryError extends Error {
  /** the gRPC status code */
  readonly code: number;
  /** the broker's message */
  readonly details: string;
  readonly retryable: boolean;
}

export class Retry extends Error {
  constructor(reason?: string, delayMs?: number);
  readonly reason: string;
  readonly delayMs?: number;
}

export class DeadLetter extends Error {
  constructor(reason: string);
  readonly reason: string;
}

export function isRetryable(err: unknown): boolean;

/** Anything with node-postgres's query(): a pg Client or PoolClient inside your transaction. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
}
export function enqueue(db: Queryable, topic: string, key: string | null, payload: Buffer | string, headers?: Record<string, string>): Promise<string>;
export function processOnce<D extends Queryable>(db: D, consumerGroup: string, message: Message | string, fn: (db: D) => Promise<unknown> | unknown): Promise<boolean>;

export const status: typeof GrpcStatus;
export const proto: any;
