//! Registry resources: entities, sources, feature groups.

use super::error::{ApiResult, Json, Path};
use crate::model::{Actor, Entity, FeatureGroup, Source};
use crate::service::Wafer;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

pub fn router() -> Router<Wafer> {
    Router::new()
        .route("/v1/entities", get(list_entities))
        .route("/v1/entities/{name}", get(get_entity).put(put_entity).delete(delete_entity))
        .route("/v1/sources", get(list_sources))
        .route("/v1/sources/{name}", get(get_source).put(put_source).delete(delete_source))
        .route("/v1/feature-groups", get(list_groups))
        .route("/v1/feature-groups/{name}", get(get_group).put(put_group).delete(delete_group))
}

async fn put_entity(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(e): Json<Entity>,
) -> ApiResult<Json<Entity>> {
    let stored = (*w.put_entity(&name, e).await?).clone();
    w.record_change(&actor, "entity.put", &name, json!({"definition": stored})).await;
    Ok(Json(stored))
}

async fn get_entity(State(w): State<Wafer>, Path(name): Path<String>) -> ApiResult<Json<Entity>> {
    Ok(Json((*w.entity(&name)?).clone()))
}

async fn list_entities(State(w): State<Wafer>) -> Json<Value> {
    Json(json!({"entities": w.list_entities()}))
}

async fn delete_entity(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    w.delete_entity(&name).await?;
    w.record_change(&actor, "entity.delete", &name, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_source(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(s): Json<Source>,
) -> ApiResult<Json<Source>> {
    let stored = (*w.put_source(&name, s).await?).clone();
    w.record_change(&actor, "source.put", &name, json!({"definition": stored})).await;
    Ok(Json(stored))
}

async fn get_source(State(w): State<Wafer>, Path(name): Path<String>) -> ApiResult<Json<Source>> {
    Ok(Json((*w.source(&name)?).clone()))
}

async fn list_sources(State(w): State<Wafer>) -> Json<Value> {
    Json(json!({"sources": w.list_sources()}))
}

async fn delete_source(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    w.delete_source(&name).await?;
    w.record_change(&actor, "source.delete", &name, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_group(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(g): Json<FeatureGroup>,
) -> ApiResult<Json<FeatureGroup>> {
    let stored = (*w.put_feature_group(&name, g).await?).clone();
    w.record_change(&actor, "feature_group.put", &name, json!({"definition": stored})).await;
    Ok(Json(stored))
}

async fn get_group(State(w): State<Wafer>, Path(name): Path<String>) -> ApiResult<Json<FeatureGroup>> {
    Ok(Json((*w.feature_group(&name)?).clone()))
}

async fn list_groups(State(w): State<Wafer>) -> Json<Value> {
    Json(json!({"feature_groups": w.list_feature_groups()}))
}

async fn delete_group(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    w.delete_feature_group(&name).await?;
    w.record_change(&actor, "feature_group.delete", &name, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}
