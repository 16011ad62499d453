import ContextModel
import ContextProtocol

/// The HTTP API's OpenAPI 3.1 document (`GET /openapi.json`), generated from the same sources
/// the server runs: the op table's codecs (`FieldSpec`s), answers and error codes
/// (`OperationSpec.errors`), the status of each code (`HTTPFrontDoor.status(of:)`) and the
/// resource routes (`HTTPRoute.resources`). Nothing in it is written twice.
enum OpenAPIDocument {
    /// The document as JSON text, with a newline as every answer has.
    static func json() -> [UInt8] {
        var writer = JSONWriter()
        writer.value(document())
        writer.raw("\n")
        return writer.bytes
    }

    static func document() -> JSONValue {
        var paths: [(key: String, value: JSONValue)] = [
            ("/health", ["get": plain("health", "Whether the server serves (no key needed).", tag: "server")]),
            (
                "/metrics",
                [
                    "get": [
                        "operationId": "metrics_text", "tags": ["server"],
                        "summary": "Prometheus text: requests, latency, memories, caches (a key when keys are on).",
                        "responses": [
                            "200": [
                                "description": "the metrics", "content": ["text/plain": ["schema": ["type": "string"]]],
                            ],
                            "401": errorResponse([.unauthorized]), "429": errorResponse([.rateLimited]),
                        ],
                    ]
                ]
            ),
        ]
        for op in OperationTable.descriptors.sorted(by: { $0.name < $1.name }) {
            let operation: JSONValue = [
                "operationId": .string(op.name), "tags": ["ops"],
                "summary": .string("The `\(op.name)` op: the line protocol's request object without `op`."),
                "requestBody": [
                    "required": true,
                    "content": ["application/json": ["schema": requestSchema(op.requestFields, envelope: true)]],
                ],
                "responses": responses(of: op),
            ]
            paths.append(("/v1/ops/\(op.name)", ["post": operation]))
        }
        var resourcePaths: [(path: String, methods: [(key: String, value: JSONValue)])] = []
        for route in HTTPRoute.resources {
            let operation = resourceOperation(route)
            let method = route.method.rawValue.lowercased()
            if let index = resourcePaths.firstIndex(where: { $0.path == route.path }) {
                resourcePaths[index].methods.append((method, operation))
            } else {
                resourcePaths.append((route.path, [(method, operation)]))
            }
        }
        paths += resourcePaths.map { ($0.path, .object(JSONObject($0.methods))) }
        return [
            "openapi": "3.1.0",
            "info": [
                "title": "ContextStore HTTP API", "version": .string(serverVersion),
                "description": """
                The line protocol's operations over HTTP: every op as POST /v1/ops/{op} with the \
                op's fields as a JSON object, answered with the same JSON the TCP answer has, and \
                resource routes that map onto one op each. Errors carry {"ok":false,"error":\
                {"code","message"}} and one HTTP status per code (docs/PROTOCOL.md, "HTTP").
                """,
            ],
            "components": [
                "securitySchemes": ["key": ["type": "http", "scheme": "bearer"]],
                "schemas": ["Error": errorSchema()],
            ],
            // Without keys on the server no header is needed: both are listed.
            "security": [["key": []], [:]],
            "paths": .object(JSONObject(paths)),
        ]
    }

    /// A resource route: its path's segments and (without a body) its query as parameters.
    private static func resourceOperation(_ route: HTTPRoute) -> JSONValue {
        guard let op = OperationTable.byName[route.op] else {
            preconditionFailure("a resource route names an op the table lacks: \(route.op)")
        }
        let inPath = Set(route.parameters)
        let rest = op.requestFields.filter { !inPath.contains($0.name) }
        var parameters: [JSONValue] = route.parameters.map { name in
            [
                "name": .string(name), "in": "path", "required": true,
                "description": "percent-encoded UTF-8, compared byte for byte",
                "schema": ["type": "string", "minLength": 1],
            ]
        }
        var operation: [(key: String, value: JSONValue)] = [
            ("operationId", .string(route.method.rawValue.lowercased() + route.path.replacing("/", with: "_"))),
            ("tags", ["resources"]), ("summary", .string(route.summary)),
        ]
        switch route.body {
        case .none:
            // Values that are JSON objects or arrays (`where`) are taken too, as JSON text; only
            // the scalar fields are listed.
            parameters += rest.filter(\.isScalar).map { field in
                [
                    "name": .string(field.name), "in": "query", "required": .bool(field.required),
                    "description": .string(field.summary), "schema": schema(of: field),
                ]
            }
        case .object:
            operation.append(("requestBody", body(requestSchema(rest, envelope: true))))
        case .memoryOrMemories:
            let batch = HTTPRoute.fields(of: "add_batch")
            parameters += batch.filter { $0.kind != .memories }.map { field in
                [
                    "name": .string(field.name), "in": "query", "required": false,
                    "description": .string("with an array body: \(field.summary)"), "schema": schema(of: field),
                ]
            }
            let item = requestSchema(rest, envelope: false)
            operation.append(
                (
                    "requestBody",
                    body([
                        "oneOf": [
                            requestSchema(rest, envelope: true),
                            [
                                "type": "array", "minItems": 1, "maxItems": .integer(Int64(Limits.maximumBatchItems)),
                                "items": item,
                            ],
                        ]
                    ])
                ))
        }
        operation.append(("parameters", .array(parameters)))
        var statuses = responses(of: op)
        if case .object(var object) = statuses {
            // A path that names no route, and a body a route does not take.
            if object["404"] == nil { object.fields.append(("404", errorResponse([.notFound]))) }
            if object["400"] == nil { object.fields.append(("400", errorResponse([.invalidValue]))) }
            statuses = .object(object)
        }
        operation.append(("responses", statuses))
        return .object(JSONObject(operation))
    }

    private static func body(_ schema: JSONValue) -> JSONValue {
        ["required": true, "content": ["application/json": ["schema": schema]]]
    }

    /// The answers of `op`: 200 with its answer's fields, and each of its error codes' statuses.
    private static func responses(of op: OperationDescriptor) -> JSONValue {
        let required = op.answer.filter { !$0.hasSuffix("?") }
        var properties: [(key: String, value: JSONValue)] = [("ok", ["const": true]), ("rid", [:])]
        properties += op.answer.map { ($0.hasSuffix("?") ? String($0.dropLast()) : $0, [:]) }
        var answers: [(key: String, value: JSONValue)] = [
            (
                "200",
                [
                    "description": "ok",
                    "content": [
                        "application/json": [
                            "schema": [
                                "type": "object", "required": .array((["ok"] + required).map { .string($0) }),
                                "properties": .object(JSONObject(properties)),
                            ]
                        ]
                    ],
                ]
            )
        ]
        var byStatus: [(status: Int, codes: [ErrorCode])] = []
        for code in OperationSpec.errors(of: op) {
            let status = Int(HTTPFrontDoor.status(of: code).code)
            if let index = byStatus.firstIndex(where: { $0.status == status }) {
                byStatus[index].codes.append(code)
            } else {
                byStatus.append((status, [code]))
            }
        }
        for (status, codes) in byStatus.sorted(by: { $0.status < $1.status }) {
            answers.append((String(status), errorResponse(codes)))
        }
        return .object(JSONObject(answers))
    }

    private static func errorResponse(_ codes: [ErrorCode]) -> JSONValue {
        [
            "description": .string(codes.map(\.rawValue).joined(separator: ", ")),
            "content": ["application/json": ["schema": ["$ref": "#/components/schemas/Error"]]],
        ]
    }

    private static func errorSchema() -> JSONValue {
        [
            "type": "object", "required": ["ok", "error"],
            "properties": [
                "ok": ["const": false], "rid": [:],
                "error": [
                    "type": "object", "required": ["code", "message"],
                    "properties": [
                        "code": ["enum": .array(ErrorCode.allCases.map { .string($0.rawValue) })],
                        "message": ["type": "string"],
                    ],
                ],
            ],
        ]
    }

    private static func plain(_ id: String, _ summary: String, tag: String) -> JSONValue {
        [
            "operationId": .string(id), "tags": [.string(tag)], "summary": .string(summary),
            "responses": [
                "200": [
                    "description": "ok",
                    "content": [
                        "application/json": [
                            "schema": ["type": "object", "required": ["ok"], "properties": ["ok": ["const": true]]]
                        ]
                    ],
                ],
                "503": errorResponse([.shuttingDown]),
            ],
        ]
    }

    /// A request object: `fields` (and `rid`, `min_seq` when `envelope`), nothing else.
    private static func requestSchema(_ fields: [FieldSpec], envelope: Bool) -> JSONValue {
        var properties = fields.map { (key: $0.name, value: schema(of: $0)) }
        if envelope {
            properties.append(("rid", ["description": "echoed in the answer"]))
            properties.append(
                (
                    "min_seq",
                    [
                        "type": "integer", "minimum": 0,
                        "description": "clustered: answer only once the user's range has this sequence",
                    ]
                ))
        }
        return [
            "type": "object", "additionalProperties": false,
            "required": .array(fields.filter(\.required).map { .string($0.name) }),
            "properties": .object(JSONObject(properties)),
        ]
    }

    /// A field's JSON schema, with its range.
    static func schema(of field: FieldSpec) -> JSONValue {
        var schema: [(key: String, value: JSONValue)] = [("description", .string(field.summary))]
        func bounds() {
            if let minimum = field.minimum {
                schema.append((field.exclusiveMinimum ? "exclusiveMinimum" : "minimum", number(minimum)))
            }
            if let maximum = field.maximum { schema.append(("maximum", number(maximum))) }
        }
        switch field.kind {
        case .string: schema.append(("type", "string"))
        case .identifier:
            schema.append(("type", "string"))
            schema.append(("minLength", 1))
        case .integer:
            schema.append(("type", "integer"))
            bounds()
        case .number:
            schema.append(("type", "number"))
            bounds()
        case .boolean: schema.append(("type", "boolean"))
        case .time:
            schema.append(
                (
                    "oneOf",
                    [
                        [
                            "type": "integer", "description": "unix milliseconds",
                            "minimum": .integer(TimeRange.milliseconds.lowerBound),
                            "maximum": .integer(TimeRange.milliseconds.upperBound),
                        ],
                        ["type": "string", "description": "ISO 8601", "format": "date-time"],
                    ]
                ))
        case .vector:
            schema.append(
                (
                    "oneOf",
                    [
                        [
                            "type": "array", "items": ["type": "number"], "minItems": 1,
                            "maxItems": .integer(Int64(Metric.maximumDimension)),
                        ],
                        ["type": "string", "description": "base64 of little-endian float32s"],
                    ]
                ))
        case .object: schema.append(("type", "object"))
        case .choice: schema.append(("enum", .array(field.choices.map { .string($0) })))
        case .strings:
            schema.append(("type", "array"))
            schema.append(("items", ["type": "string"]))
            if let minimum = field.minimum { schema.append(("minItems", number(minimum))) }
            if let maximum = field.maximum { schema.append(("maxItems", number(maximum))) }
        case .dedupe:
            schema.append(
                (
                    "oneOf",
                    [
                        ["type": "string", "enum": ["exact"]],
                        [
                            "type": "object", "required": ["near"], "additionalProperties": false,
                            "properties": ["near": ["type": "number", "exclusiveMinimum": 0, "maximum": 1]],
                        ],
                    ]
                ))
        case .memories:
            schema.append(("type", "array"))
            schema.append(("items", requestSchema(FieldSpec.memory, envelope: false)))
            if let minimum = field.minimum { schema.append(("minItems", number(minimum))) }
            if let maximum = field.maximum { schema.append(("maxItems", number(maximum))) }
        }
        return .object(JSONObject(schema))
    }

    private static func number(_ value: Double) -> JSONValue {
        value == value.rounded() && abs(value) < 9e15 ? .integer(Int64(value)) : .number(value)
    }
}

extension FieldSpec {
    /// Whether a query parameter's text holds it (not an object or array).
    var isScalar: Bool {
        switch kind {
        case .string, .identifier, .integer, .number, .boolean, .time, .choice: true
        case .vector, .object, .strings, .memories, .dedupe: false
        }
    }
}
