// @generated automatically by Diesel CLI.

diesel::table! {
    password_history (id) {
        id -> Text,
        user_id -> Text,
        password_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    server_settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        token_hash -> Text,
        user_id -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        auth_time -> BigInt,
        amr -> Text,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        email -> Nullable<Text>,
        email_verified -> Bool,
        name -> Nullable<Text>,
        given_name -> Nullable<Text>,
        family_name -> Nullable<Text>,
        nickname -> Nullable<Text>,
        picture -> Nullable<Text>,
        locale -> Nullable<Text>,
        zoneinfo -> Nullable<Text>,
        phone_number -> Nullable<Text>,
        phone_number_verified -> Bool,
        password_hash -> Nullable<Text>,
        password_changed_at -> Nullable<BigInt>,
        disabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        address -> Nullable<Text>,
    }
}

diesel::table! {
    authorization_codes (code_hash) {
        code_hash -> Text,
        client_id -> Text,
        user_id -> Text,
        session_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        nonce -> Nullable<Text>,
        code_challenge -> Nullable<Text>,
        auth_time -> BigInt,
        amr -> Text,
        acr -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        resource -> Nullable<Text>,
    }
}

diesel::table! {
    authorization_requests (id) {
        id -> Text,
        client_id -> Text,
        params -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        browser_hash -> Nullable<Text>,
    }
}

diesel::table! {
    client_assertions (client_id, jti) {
        jti -> Text,
        client_id -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        secret_hash -> Nullable<Text>,
        auth_method -> Text,
        jwks -> Nullable<Text>,
        redirect_uris -> Text,
        post_logout_redirect_uris -> Text,
        grant_types -> Text,
        scopes -> Text,
        audience -> Nullable<Text>,
        access_token_ttl -> BigInt,
        refresh_token_ttl -> BigInt,
        id_token_alg -> Text,
        require_consent -> Bool,
        refresh_without_offline_access -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        require_mfa -> Bool,
        single_session -> Bool,
    }
}

diesel::table! {
    consents (user_id, client_id) {
        user_id -> Text,
        client_id -> Text,
        scope -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    grants (id) {
        id -> Text,
        client_id -> Text,
        user_id -> Text,
        scope -> Text,
        code_hash -> Nullable<Text>,
        session_id -> Nullable<Text>,
        auth_time -> BigInt,
        amr -> Text,
        acr -> Nullable<Text>,
        nonce -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        resource -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        grant_id -> Text,
        created_at -> BigInt,
        used_at -> Nullable<BigInt>,
        successor_hash -> Nullable<Text>,
        successor_sealed -> Nullable<Text>,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        private_key -> Text,
        public_jwk -> Text,
        created_at -> BigInt,
        activates_at -> BigInt,
        retires_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    roles (name) {
        name -> Text,
        description -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    permissions (name) {
        name -> Text,
        audience -> Nullable<Text>,
        description -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    role_permissions (role, permission) {
        role -> Text,
        permission -> Text,
    }
}

diesel::table! {
    role_parents (role, parent) {
        role -> Text,
        parent -> Text,
    }
}

diesel::table! {
    user_roles (user_id, role) {
        user_id -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    client_roles (client_id, role) {
        client_id -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    exclusive_role_sets (name) {
        name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    exclusive_role_members (set_name, role) {
        set_name -> Text,
        role -> Text,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        details -> Text,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    login_throttle (username_key) {
        username_key -> Text,
        failures -> BigInt,
        last_failure_at -> BigInt,
        delay_until -> BigInt,
        locked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    login_attempts (id) {
        id -> Text,
        at -> BigInt,
        ip -> Nullable<Text>,
        ip_net -> Text,
        username_key -> Text,
        user_id -> Nullable<Text>,
        known_device -> Bool,
        user_agent -> Nullable<Text>,
        outcome -> Text,
        risk -> BigInt,
        reasons -> Text,
    }
}

diesel::table! {
    known_devices (device_id, user_id) {
        device_id -> Text,
        user_id -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        failures -> BigInt,
    }
}

diesel::table! {
    mfa_throttle (user_id) {
        user_id -> Text,
        failures -> BigInt,
        delay_until -> BigInt,
        locked_at -> Nullable<BigInt>,
        since_sign_in -> BigInt,
        before_sign_in -> BigInt,
    }
}

diesel::table! {
    totp_credentials (user_id) {
        user_id -> Text,
        secret -> Text,
        confirmed_at -> Nullable<BigInt>,
        last_step -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Text,
        code_hash -> Text,
        used_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    mfa_failures (id) {
        id -> Text,
        user_id -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        amr -> Text,
        device_id -> Nullable<Text>,
        return_to -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    webauthn_credentials (id) {
        id -> Text,
        user_id -> Text,
        credential_id -> Text,
        user_handle -> Text,
        name -> Text,
        passkey -> Text,
        synced -> Bool,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webauthn_ceremonies (token_hash) {
        token_hash -> Text,
        purpose -> Text,
        user_id -> Nullable<Text>,
        state -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::joinable!(authorization_codes -> clients (client_id));
diesel::joinable!(authorization_codes -> users (user_id));
diesel::joinable!(authorization_requests -> clients (client_id));
diesel::joinable!(consents -> clients (client_id));
diesel::joinable!(consents -> users (user_id));
diesel::joinable!(grants -> clients (client_id));
diesel::joinable!(grants -> users (user_id));
diesel::joinable!(password_history -> users (user_id));
diesel::joinable!(refresh_tokens -> grants (grant_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(login_attempts -> users (user_id));
diesel::joinable!(known_devices -> users (user_id));
diesel::joinable!(mfa_throttle -> users (user_id));
diesel::joinable!(role_permissions -> permissions (permission));
diesel::joinable!(role_permissions -> roles (role));
diesel::joinable!(user_roles -> roles (role));
diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(client_roles -> roles (role));
diesel::joinable!(client_roles -> clients (client_id));
diesel::joinable!(exclusive_role_members -> exclusive_role_sets (set_name));
diesel::joinable!(exclusive_role_members -> roles (role));

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    authorization_codes,
    authorization_requests,
    client_roles,
    client_assertions,
    clients,
    consents,
    exclusive_role_members,
    exclusive_role_sets,
    grants,
    known_devices,
    login_attempts,
    login_throttle,
    mfa_challenges,
    mfa_failures,
    mfa_throttle,
    password_history,
    permissions,
    recovery_codes,
    refresh_tokens,
    revoked_tokens,
    role_parents,
    role_permissions,
    roles,
    server_settings,
    sessions,
    signing_keys,
    totp_credentials,
    user_roles,
    users,
    webauthn_ceremonies,
    webauthn_credentials,
);
