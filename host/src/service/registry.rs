//! Registry changes: each definition is validated against the others (and a
//! feature group against its transform's descriptor) before it is stored,
//! then the in-memory cache is updated.

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::{Entity, FeatureGroup, Producer, Source, TransformKind};
use std::sync::Arc;

impl Wafer {
    pub async fn put_entity(&self, name: &str, mut entity: Entity) -> ServiceResult<Arc<Entity>> {
        entity.name = name.to_string();
        entity.validate().map_err(ServiceError::Invalid)?;
        if let Ok(existing) = self.entity(name)
            && existing.join_keys != entity.join_keys
            && self.entity_in_use(name).is_some()
        {
            return Err(ServiceError::Conflict(format!(
                "entity '{name}' is used by {}; its join keys cannot change",
                self.entity_in_use(name).unwrap_or_default()
            )));
        }
        self.registry().put_entity(&entity).await?;
        let entity = Arc::new(entity);
        self.inner.entities.insert(name.to_string(), entity.clone());
        Ok(entity)
    }

    pub fn list_entities(&self) -> Vec<Arc<Entity>> {
        sorted(self.inner.entities.iter().map(|e| e.value().clone()).collect(), |e| &e.name)
    }

    pub async fn delete_entity(&self, name: &str) -> ServiceResult<()> {
        self.entity(name)?;
        if let Some(user) = self.entity_in_use(name) {
            return Err(ServiceError::Conflict(format!("entity '{name}' is used by {user}; delete that first")));
        }
        self.registry().delete_entity(name).await?;
        self.inner.entities.remove(name);
        Ok(())
    }

    fn entity_in_use(&self, name: &str) -> Option<String> {
        if let Some(s) = self.inner.sources.iter().find(|s| s.entity == name) {
            return Some(format!("source '{}'", s.name));
        }
        self.inner.groups.iter().find(|g| g.entity == name).map(|g| format!("feature group '{}'", g.name))
    }

    pub async fn put_source(&self, name: &str, mut source: Source) -> ServiceResult<Arc<Source>> {
        source.name = name.to_string();
        source.validate().map_err(ServiceError::Invalid)?;
        let entity = self.entity(&source.entity)?;
        for key in &entity.join_keys {
            if source.field(key).is_some() || *key == source.timestamp_field {
                return Err(ServiceError::Invalid(format!(
                    "field '{key}' is a join key of entity '{}'; rows carry it automatically, do not list it in fields",
                    entity.name
                )));
            }
        }
        self.registry().put_source(&source).await?;
        let source = Arc::new(source);
        self.inner.sources.insert(name.to_string(), source.clone());
        // Kept histories have the old definition's columns.
        self.history().forget_source(name);
        Ok(source)
    }

    pub fn list_sources(&self) -> Vec<Arc<Source>> {
        sorted(self.inner.sources.iter().map(|e| e.value().clone()).collect(), |s| &s.name)
    }

    pub async fn delete_source(&self, name: &str) -> ServiceResult<()> {
        self.source(name)?;
        if let Some(g) = self.inner.groups.iter().find(|g| g.producer.source_names().iter().any(|s| s == name)) {
            return Err(ServiceError::Conflict(format!(
                "source '{name}' is read by feature group '{}'; delete that first",
                g.name
            )));
        }
        self.registry().delete_source(name).await?;
        self.offline().delete_source_rows(name).await?;
        self.inner.sources.remove(name);
        self.history().forget_source(name);
        Ok(())
    }

    pub async fn put_feature_group(&self, name: &str, mut group: FeatureGroup) -> ServiceResult<Arc<FeatureGroup>> {
        group.name = name.to_string();
        group.validate().map_err(ServiceError::Invalid)?;
        self.entity(&group.entity)?;
        self.check_producer(&group).await?;
        self.registry().put_feature_group(&group).await?;
        let group = Arc::new(group);
        self.inner.groups.insert(name.to_string(), group.clone());
        Ok(group)
    }

    /// The producer must be able to produce every declared feature: batch
    /// sources exist and describe the group's entity, the transform exists,
    /// is of the right kind and declares each feature with the same type.
    async fn check_producer(&self, group: &FeatureGroup) -> ServiceResult<()> {
        let expected_kind = match &group.producer {
            Producer::Push => return Ok(()),
            Producer::Batch { .. } => TransformKind::Batch,
            Producer::OnDemand { .. } => TransformKind::OnDemand,
        };
        for source_name in group.producer.source_names() {
            let source = self.source(&source_name)?;
            if source.entity != group.entity {
                return Err(ServiceError::Invalid(format!(
                    "source '{source_name}' describes entity '{}', but the group is for '{}'",
                    source.entity, group.entity
                )));
            }
        }
        let (transform, pinned) = group.producer.transform().expect("transform producer");
        let version = self.resolve_version(transform, pinned).await?;
        let d = &version.descriptor;
        if d.kind != expected_kind {
            return Err(ServiceError::Invalid(format!(
                "transform {transform}@{} is a {:?} transform; producer kind needs {:?}",
                version.version, d.kind, expected_kind
            )));
        }
        for f in &group.features {
            match d.output(&f.name) {
                None => {
                    return Err(ServiceError::Invalid(format!(
                        "transform {transform}@{} does not produce '{}'; it produces: {}",
                        version.version,
                        f.name,
                        d.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ")
                    )));
                }
                Some(o) if o.value_type != f.value_type => {
                    return Err(ServiceError::Invalid(format!(
                        "feature '{}' is declared {} but transform {transform}@{} produces {}",
                        f.name, f.value_type, version.version, o.value_type
                    )));
                }
                Some(_) => {}
            }
        }
        if let Producer::OnDemand { inputs, request_fields, .. } = &group.producer {
            self.check_on_demand_inputs(group, &version, inputs, request_fields)?;
        }
        if let Producer::Batch { .. } = &group.producer {
            let first = group.producer.source_names().remove(0);
            let source = self.source(&first)?;
            for input in &d.inputs {
                if source.field(&input.name).is_none() {
                    return Err(ServiceError::Invalid(format!(
                        "transform {transform}@{} reads field '{}', which source '{first}' does not have",
                        version.version, input.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// An on-demand group reads stored features of its own entity: every
    /// input the transform declares is one of the group's `inputs`, naming
    /// a feature of a batch or push group with the declared type, and every
    /// request field it declares is one of the group's `request_fields`.
    fn check_on_demand_inputs(
        &self,
        group: &FeatureGroup,
        version: &crate::model::TransformVersion,
        inputs: &[String],
        request_fields: &[crate::model::registry::SourceField],
    ) -> ServiceResult<()> {
        let label = format!("{}@{}", version.name, version.version);
        for input in inputs {
            let r = crate::model::FeatureRef::parse(input).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            let source = self.feature_group(&r.group).map_err(|_| {
                ServiceError::Invalid(format!(
                    "input '{input}' names feature group '{}', which does not exist",
                    r.group
                ))
            })?;
            if matches!(source.producer, Producer::OnDemand { .. }) {
                return Err(ServiceError::Invalid(format!(
                    "input '{input}' is itself on-demand; on-demand groups read batch or push groups"
                )));
            }
            if source.entity != group.entity {
                return Err(ServiceError::Invalid(format!(
                    "input '{input}' is a feature of entity '{}', but the group is for '{}'",
                    source.entity, group.entity
                )));
            }
            let Some(feature) = source.feature(&r.feature) else {
                return Err(ServiceError::Invalid(format!("input '{input}': group '{}' has no such feature", r.group)));
            };
            if let Some(declared) = version.descriptor.inputs.iter().find(|i| i.name == *input)
                && declared.value_type != feature.value_type
            {
                return Err(ServiceError::Invalid(format!(
                    "input '{input}' is {} but {label} reads it as {}",
                    feature.value_type, declared.value_type
                )));
            }
        }
        for declared in &version.descriptor.inputs {
            if !inputs.contains(&declared.name) {
                return Err(ServiceError::Invalid(format!(
                    "{label} reads input feature '{}'; list it in the producer's \"inputs\"",
                    declared.name
                )));
            }
        }
        for declared in &version.descriptor.request_fields {
            match request_fields.iter().find(|f| f.name == declared.name) {
                None => {
                    return Err(ServiceError::Invalid(format!(
                        "{label} needs request field '{}' ({}); list it in the producer's \"request_fields\"",
                        declared.name, declared.value_type
                    )));
                }
                Some(f) if f.value_type != declared.value_type => {
                    return Err(ServiceError::Invalid(format!(
                        "request field '{}' is declared {} but {label} reads it as {}",
                        f.name, f.value_type, declared.value_type
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub fn list_feature_groups(&self) -> Vec<Arc<FeatureGroup>> {
        sorted(self.inner.groups.iter().map(|e| e.value().clone()).collect(), |g| &g.name)
    }

    /// Deletes the definition and its data (offline history and online
    /// values), so a new group of the same name starts empty.
    pub async fn delete_feature_group(&self, name: &str) -> ServiceResult<()> {
        self.feature_group(name)?;
        let prefix = format!("{name}:");
        let reader = self.inner.groups.iter().find_map(|g| match &g.producer {
            Producer::OnDemand { inputs, .. } if inputs.iter().any(|i| i.starts_with(&prefix)) => Some(g.name.clone()),
            _ => None,
        });
        if let Some(reader) = reader {
            return Err(ServiceError::Conflict(format!(
                "feature group '{name}' is read by on-demand group '{reader}'; delete that first"
            )));
        }
        self.registry().delete_feature_group(name).await?;
        self.inner.groups.remove(name);
        self.offline().delete_feature_rows(name).await?;
        self.online().delete_group(name).await?;
        Ok(())
    }
}

fn sorted<T>(mut items: Vec<Arc<T>>, key: impl Fn(&T) -> &String) -> Vec<Arc<T>> {
    items.sort_by(|a, b| key(a).cmp(key(b)));
    items
}
